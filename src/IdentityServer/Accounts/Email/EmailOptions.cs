using System.ComponentModel.DataAnnotations;

namespace IdentityServer.Accounts.Email;

/// <summary>The <c>Email</c> configuration section: how account emails leave the server.</summary>
public sealed class EmailOptions
{
    public const string Section = "Email";

    /// <summary>The sender, e.g. <c>Identity Server &lt;no-reply@example.com&gt;</c>.</summary>
    [Required]
    public string From { get; set; } = "Identity Server <no-reply@localhost>";

    /// <summary>For development and tests: every message is written to this folder as an <c>.eml</c> file instead of being sent.</summary>
    public string? PickupDirectory { get; set; }

    public SmtpSettings Smtp { get; set; } = new();

    /// <summary>Attempts per email when the SMTP server cannot be reached or answers with a temporary (4xx) error.</summary>
    [Range(1, 20)]
    public int Attempts { get; set; } = 5;

    /// <summary>The wait before the second attempt, doubled before each later one (1, 2, 4, 8 minutes by default).</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMinutes(1);

    public sealed class SmtpSettings
    {
        /// <summary>The SMTP server; unset (and no pickup directory) means emails are not delivered, only logged as such.</summary>
        public string? Host { get; set; }

        [Range(1, 65535)]
        public int Port { get; set; } = 587;

        public string? UserName { get; set; }

        public string? Password { get; set; }

        /// <summary>TLS required: implicit TLS on port 465, STARTTLS otherwise. False only for a local relay.</summary>
        public bool UseTls { get; set; } = true;

        /// <summary>How long one delivery (connect, authenticate, send) may take in all.</summary>
        [Range(typeof(TimeSpan), "00:00:01", "00:05:00")]
        public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(1);
    }
}
