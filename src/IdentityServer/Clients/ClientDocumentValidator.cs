using System.Text.Json;
using IdentityServer.Shared;
using Microsoft.IdentityModel.Tokens;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Clients;

/// <summary>A problem with a client document, named by the RFC 7591 error code and the field at fault.</summary>
public sealed record ClientDocumentError(string Error, string Field, string Description)
{
    public const string InvalidRedirectUri = "invalid_redirect_uri";
    public const string InvalidClientMetadata = "invalid_client_metadata";

    public override string ToString() => $"{Field}: {Description}";
}

/// <summary>The rules every client document meets, wherever it comes from (seed, admin API, admin pages).</summary>
public static class ClientDocumentValidator
{
    public const string DeviceCodeGrant = GrantTypes.DeviceCode;
    public const string TokenExchangeGrant = GrantTypes.TokenExchange;

    public static readonly IReadOnlySet<string> SupportedGrantTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        GrantTypes.AuthorizationCode, GrantTypes.RefreshToken, GrantTypes.ClientCredentials, DeviceCodeGrant, TokenExchangeGrant,
    };

    public static readonly IReadOnlySet<string> SupportedAuthMethods = new HashSet<string>(StringComparer.Ordinal)
    {
        ClientAuthenticationMethods.ClientSecretBasic, ClientAuthenticationMethods.ClientSecretPost,
        ClientAuthenticationMethods.PrivateKeyJwt, ClientAuthenticationMethods.None,
    };

    public static readonly IReadOnlySet<string> SupportedConsentTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        ConsentTypes.Explicit, ConsentTypes.Implicit, ConsentTypes.External, ConsentTypes.Systematic,
    };

    public static readonly IReadOnlySet<string> SupportedApplicationTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        ApplicationTypes.Web, ApplicationTypes.Native,
    };

    /// <summary>
    /// Checks a document. <paramref name="scopeExists"/> says whether a scope is known (standard or registered);
    /// <paramref name="secretRequired"/> is true where no secret can be generated for a confidential client (the seed);
    /// <paramref name="isThisServer"/> says whether an address is this server's own (no audience alias may be).
    /// </summary>
    public static IReadOnlyList<ClientDocumentError> Validate(ClientDocument client, Func<string, bool> scopeExists, bool secretRequired,
        Func<string, bool> isThisServer)
    {
        var errors = new List<ClientDocumentError>();
        void Metadata(string field, string description) =>
            errors.Add(new(ClientDocumentError.InvalidClientMetadata, field, description));

        if (string.IsNullOrWhiteSpace(client.ClientId))
        {
            Metadata("client_id", "is required.");
        }
        else if (client.ClientId.Length > 100 || !client.ClientId.All(IsClientIdCharacter))
        {
            // The client_id is part of URLs (/api/admin/clients/{client_id}), pages and error messages: only the characters
            // a URL carries unescaped (RFC 3986's unreserved), so it never needs escaping or reads as something else.
            Metadata("client_id", "must be at most 100 characters, each an ASCII letter or digit or one of - . _ ~.");
        }

        if (client.ClientName is { Length: > 200 })
        {
            Metadata("client_name", "must be at most 200 characters.");
        }
        else if (client.ClientName is { } name && !DisplayText.IsAcceptable(name))
        {
            Metadata("client_name", DisplayText.Problem);
        }

        var method = client.TokenEndpointAuthMethod ?? ClientAuthenticationMethods.ClientSecretBasic;
        if (!SupportedAuthMethods.Contains(method))
        {
            Metadata("token_endpoint_auth_method", $"'{method}' is not supported; use one of: {string.Join(", ", SupportedAuthMethods)}.");
        }

        var isPublic = method == ClientAuthenticationMethods.None;
        if (isPublic && !string.IsNullOrEmpty(client.ClientSecret))
        {
            Metadata("client_secret", "a public client (token_endpoint_auth_method 'none') has no secret.");
        }

        if (method is ClientAuthenticationMethods.ClientSecretBasic or ClientAuthenticationMethods.ClientSecretPost
            && secretRequired && string.IsNullOrEmpty(client.ClientSecret))
        {
            Metadata("client_secret", $"is required for token_endpoint_auth_method '{method}'.");
        }

        if (!string.IsNullOrEmpty(client.ClientSecret) && client.ClientSecret.Length is < 16 or > 256)
        {
            Metadata("client_secret", "must be 16 to 256 characters.");
        }

        if (method == ClientAuthenticationMethods.PrivateKeyJwt && !string.IsNullOrEmpty(client.ClientSecret))
        {
            Metadata("client_secret", "a private_key_jwt client authenticates with its keys (jwks), not a secret.");
        }

        if (client.JwksUri is { } jwksUri)
        {
            if (method != ClientAuthenticationMethods.PrivateKeyJwt)
            {
                Metadata("jwks_uri", "is only used with token_endpoint_auth_method 'private_key_jwt'.");
            }
            else if (client.Jwks is not null)
            {
                Metadata("jwks_uri", "give the client's keys inline (jwks) or by reference (jwks_uri), not both.");
            }
            else if (ServerFetchedUriProblem(jwksUri, isPublic: false) is { } jwksUriProblem)
            {
                Metadata("jwks_uri", jwksUriProblem);
            }
        }

        if (method == ClientAuthenticationMethods.PrivateKeyJwt && client.Jwks is null && client.JwksUri is null)
        {
            Metadata("jwks", "is required for token_endpoint_auth_method 'private_key_jwt' (or jwks_uri).");
        }
        else if (client.Jwks is { } jwks)
        {
            if (method != ClientAuthenticationMethods.PrivateKeyJwt)
            {
                Metadata("jwks", "is only used with token_endpoint_auth_method 'private_key_jwt'.");
            }
            else
            {
                CheckJwks(jwks, Metadata);
            }
        }

        if (client.RequireSignedRequestObject == true && (method != ClientAuthenticationMethods.PrivateKeyJwt || (client.Jwks is null && client.JwksUri is null)))
        {
            Metadata("require_signed_request_object", "needs the client's public keys to verify its request objects with: token_endpoint_auth_method 'private_key_jwt' and 'jwks' (or 'jwks_uri').");
        }

        if (client.RequirePushedAuthorizationRequests == true && !client.GrantTypes.Contains(GrantTypes.AuthorizationCode))
        {
            Metadata("require_pushed_authorization_requests", "is for the authorization code flow: it needs the authorization_code grant.");
        }

        if (client.GrantTypes.Count == 0)
        {
            Metadata("grant_types", "at least one grant type is required.");
        }

        foreach (var grant in client.GrantTypes.Where(g => !SupportedGrantTypes.Contains(g)))
        {
            Metadata("grant_types", $"'{grant}' is not supported; use any of: {string.Join(", ", SupportedGrantTypes)}.");
        }

        if (isPublic && client.GrantTypes.Contains(GrantTypes.ClientCredentials))
        {
            Metadata("grant_types", "a public client cannot use client_credentials.");
        }

        if (isPublic && client.GrantTypes.Contains(TokenExchangeGrant))
        {
            Metadata("grant_types", "a public client cannot use token exchange: the exchange needs an authenticated client.");
        }

        if (client.RequirePkce == false)
        {
            if (isPublic)
            {
                // RFC 9700 section 2.1.1: PKCE is what keeps a public client's stolen code useless.
                Metadata("require_pkce", "a public client (token_endpoint_auth_method 'none') must use PKCE.");
            }
            else if (!client.GrantTypes.Contains(GrantTypes.AuthorizationCode))
            {
                Metadata("require_pkce", "applies to the authorization_code grant only.");
            }
        }

        foreach (var alias in client.AudienceAliases ?? [])
        {
            if (isPublic)
            {
                // Anyone can claim a public client's client_id: it would let anyone revoke tokens of that audience.
                Metadata("audience_aliases", "a public client (token_endpoint_auth_method 'none') cannot stand for an audience.");
                break;
            }

            if (!IsAudienceAlias(alias))
            {
                Metadata("audience_aliases", $"'{Echo(alias)}' must be an absolute URI with a '/' (such as https://api.example.com), at most 200 characters, no spaces.");
            }
            else if (isThisServer(alias))
            {
                Metadata("audience_aliases", $"'{Echo(alias)}' {Authorization.ServerAudience.Problem}");
            }
        }

        if (client.GrantTypes.Contains(GrantTypes.RefreshToken)
            && !client.GrantTypes.Any(g => g is GrantTypes.AuthorizationCode or DeviceCodeGrant or TokenExchangeGrant))
        {
            Metadata("grant_types", "refresh_token needs a grant that issues refresh tokens (authorization_code or the device code grant).");
        }

        if (client.ConsentType is not null && !SupportedConsentTypes.Contains(client.ConsentType))
        {
            Metadata("consent_type", $"'{client.ConsentType}' is not supported; use one of: {string.Join(", ", SupportedConsentTypes)}.");
        }

        if (client.ApplicationType is not null && !SupportedApplicationTypes.Contains(client.ApplicationType))
        {
            Metadata("application_type", $"'{client.ApplicationType}' is not supported; use 'web' or 'native'.");
        }

        var isNative = client.ApplicationType == ApplicationTypes.Native;
        if (client.GrantTypes.Contains(GrantTypes.AuthorizationCode) && client.RedirectUris.Count == 0)
        {
            errors.Add(new(ClientDocumentError.InvalidRedirectUri, "redirect_uris", "at least one is required for authorization_code."));
        }

        CheckRedirectUris(client.RedirectUris, "redirect_uris", isNative, errors);
        CheckRedirectUris(client.PostLogoutRedirectUris, "post_logout_redirect_uris", isNative, errors);
        if (client.BackChannelLogoutUri is { } backChannel && ServerFetchedUriProblem(backChannel, isPublic) is { } problem)
        {
            Metadata("backchannel_logout_uri", $"'{Echo(backChannel)}' {problem}");
        }
        else if (client.BackChannelLogoutSessionRequired == true && string.IsNullOrEmpty(client.BackChannelLogoutUri))
        {
            Metadata("backchannel_logout_session_required", "needs a backchannel_logout_uri.");
        }

        if (client.FrontChannelLogoutUri is { } frontChannel && FrontChannelLogoutUriProblem(frontChannel, isPublic, client.RedirectUris) is { } frontProblem)
        {
            Metadata("frontchannel_logout_uri", $"'{Echo(frontChannel)}' {frontProblem}");
        }
        else if (client.FrontChannelLogoutSessionRequired == true && string.IsNullOrEmpty(client.FrontChannelLogoutUri))
        {
            Metadata("frontchannel_logout_session_required", "needs a frontchannel_logout_uri.");
        }

        foreach (var scope in ClientDescriptorMapper.SplitScopes(client.Scope).Where(s => !scopeExists(s)))
        {
            Metadata("scope", $"'{scope}' is not a registered scope.");
        }

        CheckLifetime(client.AccessTokenLifetime, "access_token_lifetime", errors);
        CheckLifetime(client.RefreshTokenLifetime, "refresh_token_lifetime", errors);
        return errors;
    }

    /// <summary>
    /// A client's token lifetime: a minute to a year. One longer than the server's is stored as it is and cut to the
    /// server's where tokens are made (<see cref="ClientDescriptorMapper.CapLifetimes"/>), so that lowering the server's
    /// lowers every client's and a client saved unchanged is never refused for it.
    /// </summary>
    private static void CheckLifetime(int? seconds, string field, List<ClientDocumentError> errors)
    {
        if (seconds is { } value && value is < MinTokenLifetimeSeconds or > MaxTokenLifetimeSeconds)
        {
            errors.Add(new(ClientDocumentError.InvalidClientMetadata, field,
                $"must be {MinTokenLifetimeSeconds} to {MaxTokenLifetimeSeconds} seconds (used up to the server's own lifetime); leave it out for the server's."));
        }
    }

    private const int MinTokenLifetimeSeconds = 60;

    private const int MaxTokenLifetimeSeconds = 366 * 24 * 3600;

    /// <summary>
    /// A JSON problem in a document (unknown field, wrong shape), as the RFC 7591 error naming the field, for
    /// callers that read documents from JSON (the admin API).
    /// </summary>
    public static ClientDocumentError FromJsonException(JsonException e, string knownFields = "the RFC 7591 names, e.g. client_id, redirect_uris")
    {
        var field = e.Path?.TrimStart('$', '.') is { Length: > 0 } path ? path : "(document)";
        return e.Message.Contains("could not be mapped", StringComparison.Ordinal)
                ? new(ClientDocumentError.InvalidClientMetadata, field, $"is not a known field (fields: {knownFields}).")
            : e.Message.StartsWith("Duplicate property", StringComparison.Ordinal)
                ? new(ClientDocumentError.InvalidClientMetadata, field, "is given more than once.")
            : new(ClientDocumentError.InvalidClientMetadata, field, "has the wrong type or the JSON is malformed.");
    }

    private static bool IsClientIdCharacter(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~';

    /// <summary>A value as an error message quotes it: its start only, so a huge value does not make a huge answer.</summary>
    /// <summary>
    /// What an audience alias may be: an absolute URI with a '/' (not a file path), at most 200 characters, no spaces.
    /// The '/' keeps every alias apart from every client_id (which holds none), so an alias never lets one client pass
    /// for another. Stored aliases are held to it too (<see cref="ClientDescriptorMapper.AudienceAliasesOf"/>).
    /// </summary>
    public static bool IsAudienceAlias(string? alias) =>
        !string.IsNullOrEmpty(alias) && alias.Length <= 200 && !alias.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))
        && alias.Contains('/') && Uri.TryCreate(alias, UriKind.Absolute, out var uri) && !uri.IsFile;

    internal static string Echo(string? value) => value is { Length: > 100 } ? value[..100] + "..." : value ?? string.Empty;

    /// <summary>
    /// Every key must be able to verify the client's assertions (<see cref="ClientJsonWebKeys"/>); then the set must
    /// also parse as IdentityModel reads it when the client authenticates.
    /// </summary>
    private static void CheckJwks(JsonElement jwks, Action<string, string> metadata)
    {
        var problems = ClientJsonWebKeys.Problems(jwks);
        foreach (var (field, description) in problems)
        {
            metadata(field, description);
        }

        if (problems.Count > 0)
        {
            return;
        }

        try
        {
            _ = JsonWebKeySet.Create(jwks.GetRawText());
        }
        catch (Exception e) when (e is ArgumentException or JsonException or InvalidOperationException)
        {
            metadata("jwks", "is not a valid JSON Web Key Set.");
        }
    }

    private static void CheckRedirectUris(List<string> uris, string field, bool isNative, List<ClientDocumentError> errors)
    {
        if (uris.Count > 50)
        {
            errors.Add(new(ClientDocumentError.InvalidRedirectUri, field, "at most 50 are allowed."));
            return;
        }

        for (var i = 0; i < uris.Count; i++)
        {
            var problem = RedirectUriProblem(uris[i], isNative);
            if (problem is not null)
            {
                errors.Add(new(ClientDocumentError.InvalidRedirectUri, $"{field}[{i}]", $"'{Echo(uris[i])}' {problem}"));
            }
        }
    }

    /// <summary>
    /// A URI the server itself contacts (a back-channel logout URI, a jwks_uri): an absolute https URI without a fragment
    /// or user information, at most 2,000 characters; http only on loopback and only for a confidential client (OpenID
    /// Connect Back-Channel Logout 1.0 section 2.2).
    /// </summary>
    private static string? ServerFetchedUriProblem(string value, bool isPublic)
    {
        if (value.Length > 2000)
        {
            return "must be at most 2000 characters.";
        }

        if (AbsoluteUris.TryParse(value, out var uri) && HasUserInformation(value, uri))
        {
            return UserInformationProblem;
        }

        if (isPublic && uri is not null && uri.Scheme == Uri.UriSchemeHttp)
        {
            return "must use https (http is allowed only for a confidential client, on loopback).";
        }

        return RedirectUriProblem(value, isNative: false);
    }

    /// <summary>
    /// The browser loads it in a frame of this server's page: rules of a back-channel logout URI (https; http only on
    /// loopback and for a confidential client, OpenID Connect Front-Channel Logout 1.0 section 2), no <c>iss</c> or
    /// <c>sid</c> of its own (this server adds them), and on the scheme, host and port of one of the client's redirect
    /// URIs, so the pages that frame it name only origins the client owns.
    /// </summary>
    private static string? FrontChannelLogoutUriProblem(string value, bool isPublic, IReadOnlyList<string> redirectUris)
    {
        if (ServerFetchedUriProblem(value, isPublic) is { } problem)
        {
            return problem;
        }

        var uri = new Uri(value);
        if (Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(uri.Query).Keys.Any(k => k is "iss" or "sid"))
        {
            return "must not have iss or sid in its query: this server adds them.";
        }

        return redirectUris.Any(r => Uri.TryCreate(r, UriKind.Absolute, out var redirect)
                && Uri.Compare(redirect, uri, UriComponents.SchemeAndServer, UriFormat.UriEscaped, StringComparison.OrdinalIgnoreCase) == 0)
            ? null
            : "must have the scheme, host and port of one of the client's redirect_uris.";
    }

    /// <summary>
    /// Redirect URIs are absolute, have no fragment or user information, and use https, except loopback http (native and
    /// development apps) and a native app's private-use scheme (reverse domain name, RFC 8252 section 7.1).
    /// </summary>
    internal static string? RedirectUriProblem(string? value, bool isNative)
    {
        if (!AbsoluteUris.TryParse(value, out var uri))
        {
            return "is not an absolute URI.";
        }

        // https://trusted.example@evil.example/ reads as the first host to a person and goes to the second.
        if (HasUserInformation(value, uri))
        {
            return UserInformationProblem;
        }

        if (!string.IsNullOrEmpty(uri.Fragment) || value.Contains('#'))
        {
            return "must not contain a fragment.";
        }

        if (uri.Scheme == Uri.UriSchemeHttps)
        {
            return null;
        }

        if (uri.Scheme == Uri.UriSchemeHttp)
        {
            return uri.IsLoopback ? null : "must use https (http is allowed only on loopback).";
        }

        if (isNative && uri.Scheme.Contains('.'))
        {
            return null;
        }

        return isNative
            ? "must use https, loopback http, or a private-use scheme in reverse domain form (com.example.app:/callback)."
            : "must use https (private-use schemes are for application_type 'native').";
    }

    private const string UserInformationProblem = "must not contain user information (a user name or password before the host).";

    /// <summary>
    /// Whether the URI's authority has user information, an empty one too (<c>https://@host/</c>, which <see cref="Uri"/>
    /// reads as no user information).
    /// </summary>
    private static bool HasUserInformation(string value, Uri uri)
    {
        if (uri.UserInfo.Length > 0)
        {
            return true;
        }

        // An authority follows "scheme://" only; elsewhere "://" is in the path or query.
        if (!value.AsSpan(uri.Scheme.Length).StartsWith("://", StringComparison.Ordinal))
        {
            return false;
        }

        var authority = value.AsSpan(uri.Scheme.Length + 3);
        var end = authority.IndexOfAny('/', '?', '#');
        return (end < 0 ? authority : authority[..end]).Contains('@');
    }
}
