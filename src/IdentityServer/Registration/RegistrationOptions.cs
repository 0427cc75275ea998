namespace IdentityServer.Registration;

/// <summary>
/// OAuth 2.0 Dynamic Client Registration (RFC 7591, configuration section <c>Registration</c>): off unless enabled, and
/// then for the kinds of client the settings allow only.
/// </summary>
public sealed class RegistrationOptions
{
    public const string Section = "Registration";

    /// <summary>Whether <c>/connect/register</c> exists at all (and discovery names it).</summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// Whether a registration needs an initial access token: an access token of this server with the admin scope (or
    /// an admin's session), as the admin API takes. Off: anyone may register a client, within the limits below.
    /// </summary>
    public bool RequireInitialAccessToken { get; set; }

    public static readonly IReadOnlyList<string> DefaultScopes = ["openid", "profile", "email", "offline_access"];

    public static readonly IReadOnlyList<string> DefaultGrantTypes = ["authorization_code", "refresh_token"];

    /// <summary>
    /// The scopes a registered client may be given; asking for another is refused. Without <c>scope</c>, it gets these
    /// (<c>offline_access</c> only with the refresh token grant). Empty here: configuration binding adds to a list rather
    /// than replacing it, so the defaults (<see cref="DefaultScopes"/>) are filled in after binding, when none are set.
    /// </summary>
    public List<string> AllowedScopes { get; set; } = [];

    /// <summary>The grants a registered client may use; asking for another is refused (<see cref="DefaultGrantTypes"/> when none are set).</summary>
    public List<string> AllowedGrantTypes { get; set; } = [];
}
