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

    /// <summary>The scopes a registered client may be given; asking for another is refused. Without <c>scope</c>, it gets these.</summary>
    public List<string> AllowedScopes { get; set; } = ["openid", "profile", "email", "offline_access"];

    /// <summary>The grants a registered client may use; asking for another is refused.</summary>
    public List<string> AllowedGrantTypes { get; set; } = ["authorization_code", "refresh_token"];
}
