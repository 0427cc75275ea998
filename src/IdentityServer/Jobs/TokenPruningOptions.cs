using System.ComponentModel.DataAnnotations;
using Quartz;

namespace IdentityServer.Jobs;

/// <summary>The <c>TokenPruning</c> configuration section.</summary>
public sealed class TokenPruningOptions : IValidatableObject
{
    public const string Section = "TokenPruning";

    public bool Enabled { get; set; } = true;

    /// <summary>A Quartz cron expression (seconds first); by default at the start of every hour.</summary>
    public string Schedule { get; set; } = "0 0 * * * ?";

    /// <summary>Expired, redeemed, revoked or invalid entries older than this are removed.</summary>
    [Range(typeof(TimeSpan), "00:01:00", "3650.00:00:00")]
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(14);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!CronExpression.TryParse(Schedule, out _))
        {
            yield return new ValidationResult(
                $"'{Schedule}' is not a valid Quartz cron expression (e.g. '0 0 * * * ?' for hourly).", [nameof(Schedule)]);
        }
    }
}
