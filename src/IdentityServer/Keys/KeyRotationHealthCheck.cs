using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace IdentityServer.Keys;

/// <summary>
/// Part of <c>/health/ready</c>: Degraded (still 200, so the instance keeps its traffic: its keys work) once the next
/// key of some use is more than five key checks late (four past the grace of <see cref="KeyRing.RotationOverdue"/>),
/// which only a rotation that stalled explains.
/// </summary>
public sealed class KeyRotationHealthCheck(KeyRing keys, IOptions<KeysOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var tolerance = 4 * options.Value.CheckInterval;
        var late = keys.RotationOverdue().Where(use => use.Overdue > tolerance).ToList();
        return Task.FromResult(late.Count == 0
            ? HealthCheckResult.Healthy()
            : HealthCheckResult.Degraded($"Key rotation is late ({string.Join(", ", late.Select(use => $"{use.Use} by {use.Overdue}"))}): see the log for a failing key check (event 3005)."));
    }
}
