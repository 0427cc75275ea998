using System.Text.Json;
using System.Text.Json.Serialization;
using IdentityServer.Clients;
using static OpenIddict.Abstractions.OpenIddictConstants;
using OidcGrants = OpenIddict.Abstractions.OpenIddictConstants.GrantTypes;
using OidcResponses = OpenIddict.Abstractions.OpenIddictConstants.ResponseTypes;

namespace IdentityServer.Registration;

/// <summary>
/// A client's registration request (RFC 7591 section 2): the metadata this server understands. Any other member is
/// ignored, as section 2 asks (clients send <c>logo_uri</c>, <c>contacts</c>, <c>software_id</c> and the like).
/// </summary>
public sealed class RegistrationRequest
{
    /// <summary>In an update (RFC 7592 section 2.2): the client's own id. Ignored in a registration, where the server chooses it.</summary>
    [JsonPropertyName("client_id")]
    public string? ClientId { get; set; }

    /// <summary>In an update: the client's current secret, if it sends it. Never taken as a new secret.</summary>
    [JsonPropertyName("client_secret")]
    public string? ClientSecret { get; set; }

    [JsonPropertyName("redirect_uris")]
    public List<string>? RedirectUris { get; set; }

    [JsonPropertyName("post_logout_redirect_uris")]
    public List<string>? PostLogoutRedirectUris { get; set; }

    [JsonPropertyName("token_endpoint_auth_method")]
    public string? TokenEndpointAuthMethod { get; set; }

    [JsonPropertyName("grant_types")]
    public List<string>? GrantTypes { get; set; }

    [JsonPropertyName("response_types")]
    public List<string>? ResponseTypes { get; set; }

    [JsonPropertyName("client_name")]
    public string? ClientName { get; set; }

    [JsonPropertyName("scope")]
    public string? Scope { get; set; }

    [JsonPropertyName("application_type")]
    public string? ApplicationType { get; set; }

    [JsonPropertyName("jwks")]
    public JsonElement? Jwks { get; set; }

    [JsonPropertyName("jwks_uri")]
    public string? JwksUri { get; set; }

    [JsonPropertyName("backchannel_logout_uri")]
    public string? BackChannelLogoutUri { get; set; }

    [JsonPropertyName("backchannel_logout_session_required")]
    public bool? BackChannelLogoutSessionRequired { get; set; }

    [JsonPropertyName("frontchannel_logout_uri")]
    public string? FrontChannelLogoutUri { get; set; }

    [JsonPropertyName("frontchannel_logout_session_required")]
    public bool? FrontChannelLogoutSessionRequired { get; set; }

    [JsonPropertyName("dpop_bound_access_tokens")]
    public bool? DpopBoundAccessTokens { get; set; }

    [JsonPropertyName("require_signed_request_object")]
    public bool? RequireSignedRequestObject { get; set; }

    [JsonPropertyName("require_pushed_authorization_requests")]
    public bool? RequirePushedAuthorizationRequests { get; set; }

    /// <summary>
    /// The client document to register under <paramref name="clientId"/>, or why the request asks for something a
    /// registered client may not have: RFC 7591's defaults (the code grant, <c>client_secret_basic</c>), the allowed
    /// scopes when none are asked for, and always explicit consent, so a person sees and approves every registered app.
    /// The document's own rules (<see cref="ClientDocumentValidator"/>) are checked when it is created.
    /// </summary>
    /// <param name="withInitialAccessToken">
    /// Whether this request was authenticated with an initial access token (an admin's): only such a request may name
    /// addresses this server fetches or posts to (<c>jwks_uri</c>, <c>backchannel_logout_uri</c>). An update (RFC 7592)
    /// is authenticated by the client's registration access token only, never by an initial access token.
    /// </param>
    /// <param name="current">
    /// For an update (RFC 7592), the client as stored: what an administrator gave it beyond the registration's limits
    /// (grants, scopes, a back-channel logout URI, a JWKS URI) may be sent back unchanged, and what a registrant can never
    /// set (audience aliases, consent type, PKCE) is kept as it is.
    /// </param>
    /// <param name="scopeExists">
    /// Whether a scope exists: a registration that names no scopes gets the allowed ones that do, so that an allowed scope
    /// not created yet (or deleted) does not make every such registration fail on the client document's rules.
    /// </param>
    public (ClientDocument? Document, string? Problem) ToDocument(string clientId, RegistrationOptions options, bool withInitialAccessToken,
        Func<string, bool> scopeExists, ClientDocument? current = null)
    {
        var grants = GrantTypes is { Count: > 0 } asked ? asked.Distinct(StringComparer.Ordinal).ToList() : [OidcGrants.AuthorizationCode];
        var scopes = Scope is not null ? ClientDescriptorMapper.SplitScopes(Scope).ToList()
            : options.AllowedScopes.Where(s => (s != Scopes.OfflineAccess || grants.Contains(OidcGrants.RefreshToken)) && scopeExists(s)).ToList();
        var storedScopes = ClientDescriptorMapper.SplitScopes(current?.Scope).ToHashSet(StringComparer.Ordinal);
        var problem = grants.FirstOrDefault(g => !options.AllowedGrantTypes.Contains(g) && current?.GrantTypes.Contains(g) != true) is { } grant
                ? $"grant_types: '{ClientDocumentValidator.Echo(grant)}' may not be registered here (allowed: {string.Join(", ", options.AllowedGrantTypes)})."
            : scopes.FirstOrDefault(s => !options.AllowedScopes.Contains(s) && !storedScopes.Contains(s)) is { } scope
                ? $"scope: '{ClientDocumentValidator.Echo(scope)}' may not be registered here (allowed: {string.Join(" ", options.AllowedScopes)})."
            // The server would post logout tokens wherever a registrant said: an admin registers that.
            : BackChannelLogoutUri is not null && !withInitialAccessToken && BackChannelLogoutUri != current?.BackChannelLogoutUri
                ? "backchannel_logout_uri: taken only from a registration with an initial access token (this server would post to it); ask an administrator."
            : ResponseTypes is { } responses && responses.Any(r => r != OidcResponses.Code)
                ? "response_types: only 'code' is supported."
            : ResponseTypes is { Count: > 0 } && !grants.Contains(OidcGrants.AuthorizationCode)
                ? "response_types: 'code' needs the authorization_code grant."
            // The server would fetch whatever a registrant named, as for back-channel logout.
            : JwksUri is not null && !withInitialAccessToken && JwksUri != current?.JwksUri
                ? "jwks_uri: taken only from a registration with an initial access token (this server would fetch it); send the public keys in jwks, or ask an administrator."
            : null;
        if (problem is not null)
        {
            return (null, problem);
        }

        return (new ClientDocument
        {
            ClientId = clientId,
            ClientName = ClientName,
            RedirectUris = RedirectUris ?? [],
            PostLogoutRedirectUris = PostLogoutRedirectUris ?? [],
            TokenEndpointAuthMethod = TokenEndpointAuthMethod ?? ClientAuthenticationMethods.ClientSecretBasic,
            GrantTypes = grants,
            Scope = string.Join(' ', scopes),
            ConsentType = current?.ConsentType ?? ConsentTypes.Explicit,
            RequirePkce = current?.RequirePkce,
            AudienceAliases = current?.AudienceAliases,
            AccessTokenLifetime = current?.AccessTokenLifetime,
            RefreshTokenLifetime = current?.RefreshTokenLifetime,
            ApplicationType = ApplicationType ?? ApplicationTypes.Web,
            Jwks = Jwks,
            JwksUri = JwksUri,
            BackChannelLogoutUri = BackChannelLogoutUri,
            BackChannelLogoutSessionRequired = BackChannelLogoutSessionRequired,
            FrontChannelLogoutUri = FrontChannelLogoutUri,
            FrontChannelLogoutSessionRequired = FrontChannelLogoutSessionRequired,
            DpopBoundAccessTokens = DpopBoundAccessTokens,
            RequireSignedRequestObject = RequireSignedRequestObject,
            RequirePushedAuthorizationRequests = RequirePushedAuthorizationRequests,
        }, null);
    }
}
