using System.Text.Json;
using System.Text.Json.Serialization;

namespace IdentityServer.Clients;

/// <summary>
/// A client application as users write it everywhere (seed, admin API, export): the OAuth dynamic client
/// registration metadata names of RFC 7591 section 2, plus <c>consent_type</c>, <c>application_type</c>,
/// <c>require_pkce</c> and <c>audience_aliases</c>, the logout names of OpenID Connect Back-Channel Logout 1.0 section
/// 2.2 and Front-Channel Logout 1.0 section 2, and <c>dpop_bound_access_tokens</c> of RFC 9449 section 5.2 and <c>require_signed_request_object</c> of RFC 9101
/// section 10.5 and <c>require_pushed_authorization_requests</c> of RFC 9126 section 6.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class ClientDocument
{
    [JsonPropertyName("client_id")]
    public string? ClientId { get; set; }

    /// <summary>Write-only: stored hashed, never returned.</summary>
    [JsonPropertyName("client_secret")]
    public string? ClientSecret { get; set; }

    [JsonPropertyName("client_name")]
    public string? ClientName { get; set; }

    [JsonPropertyName("redirect_uris")]
    public List<string> RedirectUris { get; set => field = value ?? []; } = [];

    [JsonPropertyName("post_logout_redirect_uris")]
    public List<string> PostLogoutRedirectUris { get; set => field = value ?? []; } = [];

    /// <summary>Where this server posts a logout token when a session the client signed in through ends (OpenID Connect Back-Channel Logout).</summary>
    [JsonPropertyName("backchannel_logout_uri")]
    public string? BackChannelLogoutUri { get; set; }

    /// <summary>Whether the client needs the session id (<c>sid</c>) in its logout tokens; this server always sends it.</summary>
    [JsonPropertyName("backchannel_logout_session_required")]
    public bool? BackChannelLogoutSessionRequired { get; set; }

    /// <summary>
    /// The page of the client that the browser loads, in a hidden frame, when the user signs out here (OpenID Connect
    /// Front-Channel Logout), with <c>iss</c> and <c>sid</c>.
    /// </summary>
    [JsonPropertyName("frontchannel_logout_uri")]
    public string? FrontChannelLogoutUri { get; set; }

    /// <summary>Whether the client needs <c>iss</c> and <c>sid</c> on its front-channel logout URI; this server always sends them.</summary>
    [JsonPropertyName("frontchannel_logout_session_required")]
    public bool? FrontChannelLogoutSessionRequired { get; set; }

    [JsonPropertyName("grant_types")]
    public List<string> GrantTypes { get; set => field = value ?? []; } = [];

    [JsonPropertyName("token_endpoint_auth_method")]
    public string? TokenEndpointAuthMethod { get; set; }

    /// <summary>Space-separated scopes the client may ask for.</summary>
    [JsonPropertyName("scope")]
    public string? Scope { get; set; }

    [JsonPropertyName("consent_type")]
    public string? ConsentType { get; set; }

    [JsonPropertyName("application_type")]
    public string? ApplicationType { get; set; }

    [JsonPropertyName("jwks")]
    public JsonElement? Jwks { get; set; }

    [JsonPropertyName("jwks_uri")]
    public string? JwksUri { get; set; }

    /// <summary>
    /// Whether the authorization code flow needs PKCE (RFC 7636). True when absent; only a confidential client may
    /// set false, for server-side libraries that cannot send PKCE. Not an RFC 7591 name: none exists.
    /// </summary>
    [JsonPropertyName("require_pkce")]
    public bool? RequirePkce { get; set; }

    /// <summary>
    /// The other names this client goes by as a token's audience (<c>aud</c>): the resources of the API it is, such as
    /// <c>https://api.example.com</c>, which no client_id can be. A token naming one may be introspected, revoked and
    /// exchanged by this client as by the audience it is. Confidential clients only. Not an RFC 7591 name: none exists.
    /// </summary>
    [JsonPropertyName("audience_aliases")]
    public List<string>? AudienceAliases { get; set; }

    /// <summary>
    /// Whether every token request of this client must carry a DPoP proof, so that each of its access tokens is bound to
    /// the client's key (RFC 9449 section 5.2). False when absent: a client may still send proofs and get bound tokens.
    /// </summary>
    [JsonPropertyName("dpop_bound_access_tokens")]
    public bool? DpopBoundAccessTokens { get; set; }

    /// <summary>
    /// Whether every authorization request of this client, at the authorization endpoint or pushed, must be a request
    /// object it signed with its keys (<c>jwks</c>), as RFC 9101 section 10.5 names it. False when absent: a client with
    /// keys may still send signed requests.
    /// </summary>
    [JsonPropertyName("require_signed_request_object")]
    public bool? RequireSignedRequestObject { get; set; }

    /// <summary>
    /// Whether this client must push every authorization request first (RFC 9126 section 6), so that none travels in the
    /// browser's address bar; the authorization endpoint then takes only a pushed request's <c>request_uri</c>. False
    /// when absent: the client may push or not.
    /// </summary>
    [JsonPropertyName("require_pushed_authorization_requests")]
    public bool? RequirePushedAuthorizationRequests { get; set; }

    /// <summary>
    /// How long this client's access tokens live, in seconds (a sensitive API's callers with 5-minute tokens, say), up to
    /// the server's <c>Tokens:AccessTokenLifetime</c>: a longer one is cut to it where tokens are made, as the signing keys
    /// stay published for the server's lifetimes only. Absent: the server's.
    /// </summary>
    [JsonPropertyName("access_token_lifetime")]
    public int? AccessTokenLifetime { get; set; }

    /// <summary>
    /// How long this client's refresh tokens live, in seconds, up to the server's <c>Tokens:RefreshTokenLifetime</c>: each
    /// refresh gives a new one that long, so it is how long the app stays signed in without using it (a day for a browser
    /// app rather than two weeks, say). Absent: the server's.
    /// </summary>
    [JsonPropertyName("refresh_token_lifetime")]
    public int? RefreshTokenLifetime { get; set; }
}

/// <summary>A scope as configured in the seed or the admin API.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class ScopeDocument
{
    [JsonPropertyName("name")]
    public string? Name { get; set; }

    [JsonPropertyName("display_name")]
    public string? DisplayName { get; set; }

    [JsonPropertyName("description")]
    public string? Description { get; set; }

    [JsonPropertyName("resources")]
    public List<string> Resources { get; set => field = value ?? []; } = [];
}

/// <summary>A user to create (or update) at start.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class UserSeedDocument
{
    [JsonPropertyName("user_name")]
    public string? UserName { get; set; }

    [JsonPropertyName("email")]
    public string? Email { get; set; }

    [JsonPropertyName("password")]
    public string? Password { get; set; }

    [JsonPropertyName("email_verified")]
    public bool EmailVerified { get; set; }

    [JsonPropertyName("roles")]
    public List<string> Roles { get; set => field = value ?? []; } = [];
}
