using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Clients;

/// <summary>
/// Turns a client document into OpenIddict's application descriptor (permissions follow from the grants), and a
/// descriptor back into a document (never with its secret).
/// </summary>
public static class ClientDescriptorMapper
{
    /// <summary>Where the document's auth method is kept, so the document round-trips.</summary>
    public const string AuthMethodProperty = "token_endpoint_auth_method";

    /// <summary>Where the back-channel logout settings are kept (the application's properties, by their metadata names).</summary>
    public const string BackChannelLogoutUriProperty = "backchannel_logout_uri";

    public const string BackChannelLogoutSessionRequiredProperty = "backchannel_logout_session_required";

    public const string FrontChannelLogoutUriProperty = "frontchannel_logout_uri";

    public const string FrontChannelLogoutSessionRequiredProperty = "frontchannel_logout_session_required";

    /// <summary>Where the client's audience aliases are kept (a JSON array of strings), absent when it has none.</summary>
    public const string AudienceAliasesProperty = "audience_aliases";

    /// <summary>
    /// Where a client that registered itself (dynamic client registration) keeps its registration access token: its
    /// SHA-256, lowercase hex. Only such clients have it.
    /// </summary>
    public const string RegistrationAccessTokenHashProperty = "registration_access_token_sha256";

    /// <summary>Where the client publishes its keys, when it registered them by reference rather than inline.</summary>
    public const string JwksUriProperty = "jwks_uri";

    /// <summary>Present, and true, when every token request of the client must carry a DPoP proof.</summary>
    public const string DpopBoundAccessTokensProperty = "dpop_bound_access_tokens";

    /// <summary>Present, and true, when every authorization request of the client must be a signed request object.</summary>
    public const string RequireSignedRequestObjectProperty = Authorization.RequestObjects.RequireSignedRequestObject;

    public static string[] SplitScopes(string? scope) =>
        scope?.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];

    /// <summary>Fills <paramref name="descriptor"/> from a document that passed <see cref="ClientDocumentValidator"/>.</summary>
    public static void Populate(OpenIddictApplicationDescriptor descriptor, ClientDocument client)
    {
        var method = client.TokenEndpointAuthMethod ?? ClientAuthenticationMethods.ClientSecretBasic;
        var grants = client.GrantTypes.ToHashSet(StringComparer.Ordinal);

        descriptor.ClientId = client.ClientId;
        descriptor.DisplayName = string.IsNullOrWhiteSpace(client.ClientName) ? client.ClientId : client.ClientName;
        descriptor.ClientType = method == ClientAuthenticationMethods.None ? ClientTypes.Public : ClientTypes.Confidential;
        descriptor.ApplicationType = client.ApplicationType ?? ApplicationTypes.Web;
        descriptor.ConsentType = client.ConsentType ?? ConsentTypes.Explicit;
        if (!string.IsNullOrEmpty(client.ClientSecret))
        {
            descriptor.ClientSecret = client.ClientSecret;
        }
        else if (method is ClientAuthenticationMethods.None or ClientAuthenticationMethods.PrivateKeyJwt)
        {
            // A client that became public or moved to its own keys keeps no secret that would still authenticate it.
            descriptor.ClientSecret = null;
        }

        descriptor.JsonWebKeySet = client.Jwks is { } jwks ? JsonWebKeySet.Create(jwks.GetRawText()) : null;
        descriptor.Properties.Remove(JwksUriProperty);
        if (!string.IsNullOrEmpty(client.JwksUri))
        {
            descriptor.Properties[JwksUriProperty] = JsonSerializer.SerializeToElement(client.JwksUri);
        }
        descriptor.Properties[AuthMethodProperty] = JsonSerializer.SerializeToElement(method);
        StoreLogoutUri(descriptor, BackChannelLogoutUriProperty, BackChannelLogoutSessionRequiredProperty, client.BackChannelLogoutUri,
            client.BackChannelLogoutSessionRequired);
        StoreLogoutUri(descriptor, FrontChannelLogoutUriProperty, FrontChannelLogoutSessionRequiredProperty, client.FrontChannelLogoutUri,
            client.FrontChannelLogoutSessionRequired);

        descriptor.Properties.Remove(AudienceAliasesProperty);
        if (client.AudienceAliases is { Count: > 0 } aliases)
        {
            descriptor.Properties[AudienceAliasesProperty] = JsonSerializer.SerializeToElement(aliases.Distinct(StringComparer.Ordinal).ToArray());
        }

        StoreFlag(descriptor, DpopBoundAccessTokensProperty, client.DpopBoundAccessTokens);
        StoreFlag(descriptor, RequireSignedRequestObjectProperty, client.RequireSignedRequestObject);

        // OpenIddict's own per-client settings: it gives the client's tokens these lifetimes instead of the server's.
        StoreLifetime(descriptor, Settings.TokenLifetimes.AccessToken, client.AccessTokenLifetime);
        StoreLifetime(descriptor, Settings.TokenLifetimes.RefreshToken, client.RefreshTokenLifetime);

        descriptor.RedirectUris.Clear();
        descriptor.RedirectUris.UnionWith(client.RedirectUris.Select(u => new Uri(u, UriKind.Absolute)));
        descriptor.PostLogoutRedirectUris.Clear();
        descriptor.PostLogoutRedirectUris.UnionWith(client.PostLogoutRedirectUris.Select(u => new Uri(u, UriKind.Absolute)));

        descriptor.Permissions.Clear();
        descriptor.Requirements.Clear();
        descriptor.Permissions.Add(Permissions.Endpoints.Token);
        descriptor.Permissions.Add(Permissions.Endpoints.Revocation);
        if (descriptor.ClientType == ClientTypes.Confidential)
        {
            descriptor.Permissions.Add(Permissions.Endpoints.Introspection);
        }

        if (grants.Contains(GrantTypes.AuthorizationCode))
        {
            // Every client allowed at the authorization endpoint may also push its requests (RFC 9126): stock
            // clients push automatically whenever discovery advertises PAR.
            descriptor.Permissions.UnionWith([
                Permissions.Endpoints.Authorization, Permissions.Endpoints.PushedAuthorization, Permissions.Endpoints.EndSession,
                Permissions.GrantTypes.AuthorizationCode, Permissions.ResponseTypes.Code,
            ]);

            // PKCE is a requirement of each client, not of the server, so a confidential client can opt out;
            // a public one never does (the validator refuses it, and this holds even without the validator).
            if (client.RequirePkce != false || descriptor.ClientType == ClientTypes.Public)
            {
                descriptor.Requirements.Add(Requirements.Features.ProofKeyForCodeExchange);
            }

            // OpenIddict's own per-client requirement: the authorization endpoint then takes pushed requests only.
            if (client.RequirePushedAuthorizationRequests == true)
            {
                descriptor.Requirements.Add(Requirements.Features.PushedAuthorizationRequests);
            }
        }

        if (grants.Contains(GrantTypes.RefreshToken))
        {
            descriptor.Permissions.Add(Permissions.GrantTypes.RefreshToken);
        }

        if (grants.Contains(GrantTypes.ClientCredentials))
        {
            descriptor.Permissions.Add(Permissions.GrantTypes.ClientCredentials);
        }

        if (grants.Contains(GrantTypes.DeviceCode))
        {
            descriptor.Permissions.UnionWith([Permissions.Endpoints.DeviceAuthorization, Permissions.GrantTypes.DeviceCode]);
        }

        if (grants.Contains(GrantTypes.TokenExchange))
        {
            descriptor.Permissions.Add(Permissions.GrantTypes.TokenExchange);
        }

        foreach (var scope in SplitScopes(client.Scope))
        {
            descriptor.Permissions.Add(Permissions.Prefixes.Scope + scope);
        }
    }

    /// <summary>
    /// The document of a stored client: what <see cref="Populate"/> wrote, read back. The secret (only its hash is
    /// stored) is never part of it.
    /// </summary>
    public static ClientDocument ToDocument(OpenIddictApplicationDescriptor descriptor)
    {
        var permissions = descriptor.Permissions;
        var backChannelLogoutUri = BackChannelLogoutUriOf(descriptor.Properties);
        var frontChannelLogoutUri = FrontChannelLogoutUriOf(descriptor.Properties);
        var grants = ClientDocumentValidator.SupportedGrantTypes
            .Where(g => permissions.Contains(Permissions.Prefixes.GrantType + g))
            .ToList();

        return new ClientDocument
        {
            ClientId = descriptor.ClientId,
            ClientName = descriptor.DisplayName,
            RedirectUris = [.. descriptor.RedirectUris.Select(u => u.OriginalString)],
            PostLogoutRedirectUris = [.. descriptor.PostLogoutRedirectUris.Select(u => u.OriginalString)],
            GrantTypes = grants,
            TokenEndpointAuthMethod = AuthMethodOf(descriptor),
            Scope = string.Join(' ', permissions
                .Where(p => p.StartsWith(Permissions.Prefixes.Scope, StringComparison.Ordinal))
                .Select(p => p[Permissions.Prefixes.Scope.Length..])),
            ConsentType = descriptor.ConsentType ?? ConsentTypes.Explicit,
            ApplicationType = descriptor.ApplicationType ?? ApplicationTypes.Web,
            Jwks = descriptor.JsonWebKeySet is { } jwks ? PublicJwks(jwks) : null,
            JwksUri = JwksUriOf(descriptor.Properties),
            BackChannelLogoutUri = backChannelLogoutUri,
            BackChannelLogoutSessionRequired = SessionRequiredOf(descriptor.Properties, BackChannelLogoutSessionRequiredProperty, backChannelLogoutUri),
            FrontChannelLogoutUri = frontChannelLogoutUri,
            FrontChannelLogoutSessionRequired = SessionRequiredOf(descriptor.Properties, FrontChannelLogoutSessionRequiredProperty, frontChannelLogoutUri),
            // Written only when it differs from the default, so documents of clients that keep PKCE read as before.
            RequirePkce = grants.Contains(GrantTypes.AuthorizationCode) && !descriptor.Requirements.Contains(Requirements.Features.ProofKeyForCodeExchange)
                ? false
                : null,
            AudienceAliases = AudienceAliasesOf(descriptor.Properties) is { Count: > 0 } aliases ? [.. aliases] : null,
            DpopBoundAccessTokens = DpopBoundAccessTokensOf(descriptor.Properties) ? true : null,
            RequireSignedRequestObject = RequireSignedRequestObjectOf(descriptor.Properties) ? true : null,
            RequirePushedAuthorizationRequests = descriptor.Requirements.Contains(Requirements.Features.PushedAuthorizationRequests) ? true : null,
            AccessTokenLifetime = (int?)LifetimeOf(descriptor.Settings, Settings.TokenLifetimes.AccessToken)?.TotalSeconds,
            RefreshTokenLifetime = (int?)LifetimeOf(descriptor.Settings, Settings.TokenLifetimes.RefreshToken)?.TotalSeconds,
        };
    }

    private static void StoreLifetime(OpenIddictApplicationDescriptor descriptor, string setting, int? seconds)
    {
        descriptor.Settings.Remove(setting);
        if (seconds is { } value)
        {
            descriptor.Settings[setting] = FormatLifetime(TimeSpan.FromSeconds(value));
        }
    }

    /// <summary>
    /// A client's settings as its tokens are made with them: its own lifetimes cut to the server's, for which the signing
    /// and encryption keys are kept (one stored longer, or before the server's was lowered, would outlive its key).
    /// </summary>
    /// <remarks>OpenIddict reads a client's settings several times for each token request: most clients have none.</remarks>
    public static ImmutableDictionary<string, string> CapLifetimes(ImmutableDictionary<string, string> settings, Authorization.TokenOptions server) =>
        settings.IsEmpty
            ? settings
            : Cap(Cap(settings, Settings.TokenLifetimes.AccessToken, server.AccessTokenLifetime), Settings.TokenLifetimes.RefreshToken, server.RefreshTokenLifetime);

    private static ImmutableDictionary<string, string> Cap(ImmutableDictionary<string, string> settings, string setting, TimeSpan longest) =>
        LifetimeOf(settings, setting) > longest ? settings.SetItem(setting, FormatLifetime(longest)) : settings;

    private static string FormatLifetime(TimeSpan lifetime) => lifetime.ToString("c", CultureInfo.InvariantCulture);

    /// <summary>A token lifetime of the client's own (<see cref="Settings.TokenLifetimes"/>), from its stored settings; null for the server's.</summary>
    public static TimeSpan? LifetimeOf(IReadOnlyDictionary<string, string> settings, string setting) =>
        settings.TryGetValue(setting, out var value) && TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out var lifetime) ? lifetime : null;

    /// <summary>
    /// The client's audience aliases, from its stored properties; empty when it has none. Only those the validator
    /// accepts now count (one stored past it, or under an earlier rule, is ignored), so none can be another client's id.
    /// </summary>
    public static IReadOnlyList<string> AudienceAliasesOf(IReadOnlyDictionary<string, JsonElement> properties) =>
        properties.TryGetValue(AudienceAliasesProperty, out var aliases) && aliases.ValueKind == JsonValueKind.Array
            ? [.. aliases.EnumerateArray().Where(alias => alias.ValueKind == JsonValueKind.String).Select(alias => alias.GetString()!)
                .Where(ClientDocumentValidator.IsAudienceAlias)]
            : [];

    /// <summary>Whether the client's stored properties say its token requests must carry a DPoP proof.</summary>
    public static bool DpopBoundAccessTokensOf(IReadOnlyDictionary<string, JsonElement> properties) => FlagOf(properties, DpopBoundAccessTokensProperty);

    /// <summary>Whether the client's stored properties say its authorization requests must be signed request objects.</summary>
    public static bool RequireSignedRequestObjectOf(IReadOnlyDictionary<string, JsonElement> properties) => FlagOf(properties, RequireSignedRequestObjectProperty);

    /// <summary>A requirement the document states with true: stored only then, so clients without it read as before.</summary>
    private static void StoreFlag(OpenIddictApplicationDescriptor descriptor, string property, bool? value)
    {
        descriptor.Properties.Remove(property);
        if (value == true)
        {
            descriptor.Properties[property] = JsonSerializer.SerializeToElement(true);
        }
    }

    private static bool FlagOf(IReadOnlyDictionary<string, JsonElement> properties, string property) =>
        properties.TryGetValue(property, out var flag) && flag.ValueKind == JsonValueKind.True;

    /// <summary>The client's <c>jwks_uri</c>, from its stored properties; null when its keys are inline or it has none.</summary>
    public static string? JwksUriOf(IReadOnlyDictionary<string, JsonElement> properties) => StringOf(properties, JwksUriProperty);

    /// <summary>The client's back-channel logout URI, from its stored properties; null when it has none.</summary>
    public static string? BackChannelLogoutUriOf(IReadOnlyDictionary<string, JsonElement> properties) => StringOf(properties, BackChannelLogoutUriProperty);

    /// <summary>The client's front-channel logout URI, from its stored properties; null when it has none.</summary>
    public static string? FrontChannelLogoutUriOf(IReadOnlyDictionary<string, JsonElement> properties) => StringOf(properties, FrontChannelLogoutUriProperty);

    /// <summary>A logout URI (back- or front-channel) and whether the client needs the session named: both, or neither without a URI.</summary>
    private static void StoreLogoutUri(OpenIddictApplicationDescriptor descriptor, string uriProperty, string sessionRequiredProperty, string? uri,
        bool? sessionRequired)
    {
        descriptor.Properties.Remove(uriProperty);
        descriptor.Properties.Remove(sessionRequiredProperty);
        if (!string.IsNullOrEmpty(uri))
        {
            descriptor.Properties[uriProperty] = JsonSerializer.SerializeToElement(uri);
            descriptor.Properties[sessionRequiredProperty] = JsonSerializer.SerializeToElement(sessionRequired ?? false);
        }
    }

    /// <summary>A logout URI's "session required", as stored: shown only beside its URI.</summary>
    private static bool? SessionRequiredOf(IReadOnlyDictionary<string, JsonElement> properties, string sessionRequiredProperty, string? uri) =>
        uri is null ? null : properties.TryGetValue(sessionRequiredProperty, out var required) && required.ValueKind == JsonValueKind.True;

    private static string? StringOf(IReadOnlyDictionary<string, JsonElement> properties, string name) =>
        properties.TryGetValue(name, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text ? text : null;

    private static string AuthMethodOf(OpenIddictApplicationDescriptor descriptor) =>
        AuthMethodOf(StoredAuthMethodOf(descriptor.Properties), descriptor.ClientType, descriptor.JsonWebKeySet is not null || JwksUriOf(descriptor.Properties) is not null);

    /// <summary>The auth method <see cref="Populate"/> stored in a client's properties, or null.</summary>
    public static string? StoredAuthMethodOf(IReadOnlyDictionary<string, JsonElement> properties) =>
        properties.TryGetValue(AuthMethodProperty, out var stored) && stored.ValueKind == JsonValueKind.String
            && stored.GetString() is { Length: > 0 } method
            ? method
            : null;

    /// <summary>
    /// A client's registered auth method: the one stored, else (a client stored without it) what its type and keys
    /// imply. The document and the token endpoints' check (<see cref="RegisteredAuthMethod"/>) both read it here.
    /// </summary>
    public static string AuthMethodOf(string? stored, string? clientType, bool hasKeys) =>
        stored ?? (clientType == ClientTypes.Public ? ClientAuthenticationMethods.None
            : hasKeys ? ClientAuthenticationMethods.PrivateKeyJwt
            : ClientAuthenticationMethods.ClientSecretBasic);

    /// <summary>The public parameters of each key (RFC 7517/7518), so no private part could ever be echoed.</summary>
    private static JsonElement PublicJwks(JsonWebKeySet set)
    {
        var keys = set.Keys.Select(key =>
        {
            var json = new Dictionary<string, object>(StringComparer.Ordinal);
            void Add(string name, string? value)
            {
                if (!string.IsNullOrEmpty(value))
                {
                    json[name] = value;
                }
            }

            Add("kty", key.Kty);
            Add("use", key.Use);
            Add("alg", key.Alg);
            Add("kid", key.Kid);
            Add("crv", key.Crv);
            Add("n", key.N);
            Add("e", key.E);
            Add("x", key.X);
            Add("y", key.Y);
            Add("x5t", key.X5t);
            Add("x5t#S256", key.X5tS256);
            Add("x5u", key.X5u);
            if (key.KeyOps.Count > 0)
            {
                json["key_ops"] = key.KeyOps.ToArray();
            }

            if (key.X5c.Count > 0)
            {
                json["x5c"] = key.X5c.ToArray();
            }

            return json;
        }).ToArray();
        return JsonSerializer.SerializeToElement(new { keys });
    }
}
