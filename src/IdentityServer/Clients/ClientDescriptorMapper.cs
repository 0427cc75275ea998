using System.Text.Json;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Clients;

/// <summary>Turns a client document into OpenIddict's application descriptor: permissions follow from the grants.</summary>
public static class ClientDescriptorMapper
{
    /// <summary>Where the document's auth method is kept, so the document round-trips.</summary>
    public const string AuthMethodProperty = "token_endpoint_auth_method";

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

        descriptor.JsonWebKeySet = client.Jwks is { } jwks ? JsonWebKeySet.Create(jwks.GetRawText()) : null;
        descriptor.Properties[AuthMethodProperty] = JsonSerializer.SerializeToElement(method);

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
            descriptor.Requirements.Add(Requirements.Features.ProofKeyForCodeExchange);
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
}
