using System.Text.Json;
using IdentityServer.Clients;
using static OpenIddict.Abstractions.OpenIddictConstants;
using OidcGrants = OpenIddict.Abstractions.OpenIddictConstants.GrantTypes;
using OidcScopes = OpenIddict.Abstractions.OpenIddictConstants.Scopes;

namespace IdentityServer.Admin.Pages.Clients;

/// <summary>A client document as an HTML form: lists as lines or checkboxes. Validated by the same rules as the API.</summary>
public sealed class ClientForm
{
    public string? ClientId { get; set; }

    public string? ClientName { get; set; }

    public string? ApplicationType { get; set; }

    public string? TokenEndpointAuthMethod { get; set; }

    public List<string>? GrantTypes { get; set; }

    /// <summary>The document's <c>require_pkce</c> turned around: checked means false.</summary>
    public bool PkceOptional { get; set; }

    /// <summary>One URI per line.</summary>
    public string? RedirectUris { get; set; }

    public string? PostLogoutRedirectUris { get; set; }

    public string? BackChannelLogoutUri { get; set; }

    public bool BackChannelLogoutSessionRequired { get; set; }

    public string? FrontChannelLogoutUri { get; set; }

    public bool FrontChannelLogoutSessionRequired { get; set; }

    public List<string>? Scopes { get; set; }

    public string? ConsentType { get; set; }

    /// <summary>On creation only: empty to have a strong one generated.</summary>
    public string? ClientSecret { get; set; }

    /// <summary>Every token request must carry a DPoP proof (<c>dpop_bound_access_tokens</c>).</summary>
    public bool DpopBoundAccessTokens { get; set; }

    /// <summary>Every authorization request must be a signed request object (<c>require_signed_request_object</c>).</summary>
    public bool RequireSignedRequestObject { get; set; }

    /// <summary>Every authorization request must be pushed first (<c>require_pushed_authorization_requests</c>).</summary>
    public bool RequirePushedAuthorizationRequests { get; set; }

    /// <summary>The client's own access token lifetime in seconds (<c>access_token_lifetime</c>); empty for the server's.</summary>
    public int? AccessTokenLifetime { get; set; }

    /// <summary>The client's own refresh token lifetime in seconds (<c>refresh_token_lifetime</c>); empty for the server's.</summary>
    public int? RefreshTokenLifetime { get; set; }

    /// <summary>One audience alias per line.</summary>
    public string? AudienceAliases { get; set; }

    /// <summary>The public keys of a private_key_jwt client, as a JSON Web Key Set.</summary>
    public string? Jwks { get; set; }

    /// <summary>Where the client publishes its public keys, instead of <see cref="Jwks"/> (<c>jwks_uri</c>).</summary>
    public string? JwksUri { get; set; }

    /// <summary>The entity tag the form was loaded with (optimistic concurrency).</summary>
    public string? ETag { get; set; }

    /// <summary>Form property of each API field, for field-level messages.</summary>
    public static readonly IReadOnlyDictionary<string, string> Fields = new Dictionary<string, string>
    {
        ["client_id"] = nameof(ClientId),
        ["client_name"] = nameof(ClientName),
        ["application_type"] = nameof(ApplicationType),
        ["token_endpoint_auth_method"] = nameof(TokenEndpointAuthMethod),
        ["grant_types"] = nameof(GrantTypes),
        ["require_pkce"] = nameof(PkceOptional),
        ["redirect_uris"] = nameof(RedirectUris),
        ["post_logout_redirect_uris"] = nameof(PostLogoutRedirectUris),
        ["backchannel_logout_uri"] = nameof(BackChannelLogoutUri),
        ["backchannel_logout_session_required"] = nameof(BackChannelLogoutUri), // the checkbox's errors show under the URI
        ["frontchannel_logout_uri"] = nameof(FrontChannelLogoutUri),
        ["frontchannel_logout_session_required"] = nameof(FrontChannelLogoutUri),
        ["scope"] = nameof(Scopes),
        ["consent_type"] = nameof(ConsentType),
        ["client_secret"] = nameof(ClientSecret),
        ["jwks"] = nameof(Jwks),
        ["jwks_uri"] = nameof(JwksUri),
        ["audience_aliases"] = nameof(AudienceAliases),
        ["dpop_bound_access_tokens"] = nameof(DpopBoundAccessTokens),
        ["require_signed_request_object"] = nameof(RequireSignedRequestObject),
        ["require_pushed_authorization_requests"] = nameof(RequirePushedAuthorizationRequests),
        ["access_token_lifetime"] = nameof(AccessTokenLifetime),
        ["refresh_token_lifetime"] = nameof(RefreshTokenLifetime),
    };

    public static ClientForm From(ClientDocument document, string? etag) => new()
    {
        ClientId = document.ClientId,
        ClientName = document.ClientName,
        ApplicationType = document.ApplicationType,
        TokenEndpointAuthMethod = document.TokenEndpointAuthMethod,
        GrantTypes = [.. document.GrantTypes],
        PkceOptional = document.RequirePkce == false,
        RedirectUris = AdminHtml.Lines(document.RedirectUris),
        PostLogoutRedirectUris = AdminHtml.Lines(document.PostLogoutRedirectUris),
        BackChannelLogoutUri = document.BackChannelLogoutUri,
        BackChannelLogoutSessionRequired = document.BackChannelLogoutSessionRequired == true,
        FrontChannelLogoutUri = document.FrontChannelLogoutUri,
        FrontChannelLogoutSessionRequired = document.FrontChannelLogoutSessionRequired == true,
        Scopes = [.. ClientDescriptorMapper.SplitScopes(document.Scope)],
        ConsentType = document.ConsentType,
        Jwks = document.Jwks is { } jwks ? JsonSerializer.Serialize(jwks, new JsonSerializerOptions { WriteIndented = true }) : null,
        JwksUri = document.JwksUri,
        AudienceAliases = AdminHtml.Lines(document.AudienceAliases ?? []),
        DpopBoundAccessTokens = document.DpopBoundAccessTokens == true,
        RequireSignedRequestObject = document.RequireSignedRequestObject == true,
        RequirePushedAuthorizationRequests = document.RequirePushedAuthorizationRequests == true,
        AccessTokenLifetime = document.AccessTokenLifetime,
        RefreshTokenLifetime = document.RefreshTokenLifetime,
        ETag = etag,
    };

    /// <summary>The document this form describes, or the field error that stops it from being one.</summary>
    public (ClientDocument? Document, FieldError? Error) ToDocument()
    {
        JsonElement? jwks = null;
        if (!string.IsNullOrWhiteSpace(Jwks))
        {
            try
            {
                jwks = JsonDocument.Parse(Jwks).RootElement.Clone();
            }
            catch (JsonException)
            {
                return (null, new FieldError(ClientDocumentError.InvalidClientMetadata, "jwks", "is not valid JSON."));
            }
        }

        return (new ClientDocument
        {
            ClientId = ClientId?.Trim(),
            ClientName = string.IsNullOrWhiteSpace(ClientName) ? null : ClientName.Trim(),
            ApplicationType = ApplicationType,
            TokenEndpointAuthMethod = TokenEndpointAuthMethod,
            GrantTypes = [.. (GrantTypes ?? []).Distinct()],
            RequirePkce = PkceOptional ? false : null,
            RedirectUris = AdminHtml.SplitLines(RedirectUris),
            PostLogoutRedirectUris = AdminHtml.SplitLines(PostLogoutRedirectUris),
            BackChannelLogoutUri = string.IsNullOrWhiteSpace(BackChannelLogoutUri) ? null : BackChannelLogoutUri.Trim(),
            BackChannelLogoutSessionRequired = BackChannelLogoutSessionRequired ? true : string.IsNullOrWhiteSpace(BackChannelLogoutUri) ? null : false,
            FrontChannelLogoutUri = string.IsNullOrWhiteSpace(FrontChannelLogoutUri) ? null : FrontChannelLogoutUri.Trim(),
            FrontChannelLogoutSessionRequired = FrontChannelLogoutSessionRequired ? true : string.IsNullOrWhiteSpace(FrontChannelLogoutUri) ? null : false,
            Scope = Scopes is { Count: > 0 } ? string.Join(' ', Scopes.Distinct()) : null,
            ConsentType = ConsentType,
            ClientSecret = string.IsNullOrEmpty(ClientSecret) ? null : ClientSecret,
            Jwks = jwks,
            JwksUri = string.IsNullOrWhiteSpace(JwksUri) ? null : JwksUri.Trim(),
            AudienceAliases = AdminHtml.SplitLines(AudienceAliases) is { Count: > 0 } aliases ? aliases : null,
            DpopBoundAccessTokens = DpopBoundAccessTokens ? true : null,
            RequireSignedRequestObject = RequireSignedRequestObject ? true : null,
            RequirePushedAuthorizationRequests = RequirePushedAuthorizationRequests ? true : null,
            AccessTokenLifetime = AccessTokenLifetime,
            RefreshTokenLifetime = RefreshTokenLifetime,
        }, null);
    }

    public static readonly IReadOnlyList<(string Value, string Label)> GrantTypeChoices =
    [
        (OidcGrants.AuthorizationCode, "Authorization code (with PKCE): people sign in"),
        (OidcGrants.RefreshToken, "Refresh token: stay signed in (needs offline_access)"),
        (OidcGrants.ClientCredentials, "Client credentials: the client acts on its own"),
        (OidcGrants.DeviceCode, "Device code: sign in on another device"),
        (OidcGrants.TokenExchange, "Token exchange"),
    ];

    public static readonly IReadOnlyList<(string Value, string Label)> AuthMethodChoices =
    [
        (ClientAuthenticationMethods.None, "None: a public client (browser, mobile, device)"),
        (ClientAuthenticationMethods.ClientSecretBasic, "Secret in the Authorization header (client_secret_basic)"),
        (ClientAuthenticationMethods.ClientSecretPost, "Secret in the request body (client_secret_post)"),
        (ClientAuthenticationMethods.PrivateKeyJwt, "Signed assertion with the client's key (private_key_jwt)"),
    ];

    public static readonly IReadOnlyList<(string Value, string Label)> ConsentChoices =
    [
        (ConsentTypes.Explicit, "Explicit: people consent once, remembered"),
        (ConsentTypes.Implicit, "Implicit: no consent page (first-party apps)"),
        (ConsentTypes.Systematic, "Systematic: asked every time"),
        (ConsentTypes.External, "External: only with an existing authorization"),
    ];

    public static readonly IReadOnlyList<(string Value, string Label)> ApplicationTypeChoices =
    [
        (ApplicationTypes.Web, "Web"),
        (ApplicationTypes.Native, "Native (allows private-use schemes such as com.example.app:/callback)"),
    ];
}

/// <summary>The kinds of client an admin picks from when registering one, each pre-filling sensible settings.</summary>
public sealed record ClientKind(string Name, string Title, string Description, Func<ClientForm> Defaults, string? RedirectExample = null)
{
    public static readonly IReadOnlyList<ClientKind> All =
    [
        new("spa", "Single-page app", "JavaScript in the browser (React, Angular, Vue). A public client: no secret, code flow with PKCE, " +
            "refresh tokens. Its origin may call the token endpoint (CORS).",
            () => Public(ApplicationTypes.Web, [OidcGrants.AuthorizationCode, OidcGrants.RefreshToken]), "https://app.example.com/callback"),
        new("native", "Mobile or desktop app", "An app installed on a device. A public client with PKCE; redirect URIs may use a " +
            "private-use scheme (com.example.app:/callback) or loopback http.",
            () => Public(ApplicationTypes.Native, [OidcGrants.AuthorizationCode, OidcGrants.RefreshToken]), "com.example.app:/callback"),
        new("web", "Web app with a server", "Server-rendered app (ASP.NET Core, Spring, Django) that keeps a secret on its server. " +
            "Code flow, refresh tokens.",
            () => new ClientForm
            {
                ApplicationType = ApplicationTypes.Web,
                // ASP.NET Core's OpenIdConnect handler sends its secret in the form, and a client must authenticate
                // the way it is registered (Clients/RegisteredAuthMethod).
                TokenEndpointAuthMethod = ClientAuthenticationMethods.ClientSecretPost,
                GrantTypes = [OidcGrants.AuthorizationCode, OidcGrants.RefreshToken],
                Scopes = [OidcScopes.OpenId, OidcScopes.Profile, OidcScopes.Email, OidcScopes.OfflineAccess],
                ConsentType = ConsentTypes.Explicit,
            }, "https://app.example.com/signin-oidc"),
        new("machine", "Machine-to-machine", "A service, job or script calling an API on its own behalf: client credentials " +
            "with a secret, no user.",
            () => new ClientForm
            {
                ApplicationType = ApplicationTypes.Web,
                TokenEndpointAuthMethod = ClientAuthenticationMethods.ClientSecretBasic,
                GrantTypes = [OidcGrants.ClientCredentials],
                Scopes = [],
                ConsentType = ConsentTypes.Implicit,
            }),
        new("device", "Device (TV, console, command line)", "A device without a browser or keyboard: the user signs in on " +
            "another device with a code (device authorization grant). A public client.",
            () => new ClientForm
            {
                ApplicationType = ApplicationTypes.Native,
                TokenEndpointAuthMethod = ClientAuthenticationMethods.None,
                GrantTypes = [OidcGrants.DeviceCode, OidcGrants.RefreshToken],
                Scopes = [OidcScopes.OpenId, OidcScopes.Profile, OidcScopes.OfflineAccess],
                ConsentType = ConsentTypes.Explicit,
            }),
    ];

    public static ClientKind? Find(string? name) => All.FirstOrDefault(k => k.Name == name);

    private static ClientForm Public(string applicationType, List<string> grants) => new()
    {
        ApplicationType = applicationType,
        TokenEndpointAuthMethod = ClientAuthenticationMethods.None,
        GrantTypes = grants,
        Scopes = [OidcScopes.OpenId, OidcScopes.Profile, OidcScopes.OfflineAccess],
        ConsentType = ConsentTypes.Explicit,
    };
}
