using System.ComponentModel.DataAnnotations;

namespace IdentityServer.Accounts;

/// <summary>The <c>Accounts</c> configuration section.</summary>
public sealed class AccountsOptions
{
    public const string Section = "Accounts";

    /// <summary>The login session ends after this long without a request (sliding).</summary>
    [Range(typeof(TimeSpan), "00:01:00", "30.00:00:00")]
    public TimeSpan SessionIdleTimeout { get; set; } = TimeSpan.FromMinutes(20);

    /// <summary>
    /// The login session ends this long after the user signed in, however active it stays: a stolen session cookie
    /// cannot be kept alive by using it. Signing in again starts a new one.
    /// </summary>
    [Range(typeof(TimeSpan), "00:01:00", "30.00:00:00")]
    public TimeSpan SessionMaxLifetime { get; set; } = TimeSpan.FromHours(10);

    /// <summary>
    /// How recent a sign-in must be to change how the account signs in (authenticator, recovery codes, passkeys);
    /// an older session is asked to sign in again first.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:30", "1.00:00:00")]
    public TimeSpan RecentSignIn { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How often a session cookie is renewed with the user's current claims (name, roles). A session the user's new
    /// security stamp ended ("sign out everywhere", a password change) is refused at its next request regardless.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan SessionValidationInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Whether people may create their own accounts at <c>/account/register</c>.</summary>
    public bool AllowRegistration { get; set; }

    /// <summary>
    /// Whether an account must confirm its email address before it can sign in. Unset: on, except in Development.
    /// </summary>
    public bool? RequireConfirmedEmail { get; set; }

    /// <summary>How long a password reset or email confirmation link stays valid.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "7.00:00:00")]
    public TimeSpan EmailLinkLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// The public origin (<c>https://id.example.com</c>) that links in emails point to. Unset: <c>Tokens:Issuer</c>, else the
    /// origin the request came to. Set it when the server is reachable under more than one host name.
    /// </summary>
    public Uri? PublicOrigin { get; set; }

    /// <summary>
    /// The server's public address as configured: <see cref="PublicOrigin"/>, else <c>Tokens:Issuer</c>. Null when
    /// neither is set, and each request's own address (its <c>Host</c> header) is all there is.
    /// </summary>
    public Uri? ConfiguredPublicAddress(Authorization.TokenOptions tokens) => PublicOrigin ?? tokens.Issuer;

    /// <summary>The name authenticator apps show for this server's TOTP entries.</summary>
    [Required]
    public string AuthenticatorIssuer { get; set; } = "Identity Server";

    /// <summary>"Remember this device" skips the second factor on that browser for this long.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "90.00:00:00")]
    public TimeSpan RememberDeviceFor { get; set; } = TimeSpan.FromDays(30);

    public LockoutSettings Lockout { get; set; } = new();

    public PasswordSettings Password { get; set; } = new();

    public PasskeySettings Passkeys { get; set; } = new();

    public sealed class LockoutSettings
    {
        /// <summary>Wrong passwords or second-factor codes in a row before the account is locked.</summary>
        [Range(1, 1000)]
        public int MaxFailedAttempts { get; set; } = 5;

        [Range(typeof(TimeSpan), "00:00:01", "30.00:00:00")]
        public TimeSpan Duration { get; set; } = TimeSpan.FromMinutes(15);
    }

    public sealed class PasswordSettings
    {
        [Range(6, 128)]
        public int RequiredLength { get; set; } = 10;

        public bool RequireDigit { get; set; }

        public bool RequireLowercase { get; set; }

        public bool RequireUppercase { get; set; }

        public bool RequireNonAlphanumeric { get; set; }

        [Range(1, 128)]
        public int RequiredUniqueChars { get; set; } = 1;
    }

    public sealed class PasskeySettings
    {
        /// <summary>The WebAuthn relying party id (the server's domain). Unset: the host the request came to.</summary>
        public string? ServerDomain { get; set; }
    }

    public bool EmailConfirmationRequired(IHostEnvironment environment) => RequireConfirmedEmail ?? !environment.IsDevelopment();
}
