using Microsoft.Extensions.Options;
using OpenIddict.Server;

namespace IdentityServer.Authorization;

/// <summary>
/// This server's own address as an audience: an access token whose scopes name no API names the issuer
/// (<see cref="AccessTokenAudience"/>). An API registered under that address (a scope's resource, a client's audience
/// alias) would take every such token, of any client, so none may be: the configured issuer, or without one the address
/// of the request that registers it (the seed, at start, knows only the configured one).
/// </summary>
public sealed class ServerAudience(IOptionsMonitor<OpenIddictServerOptions> server, IHttpContextAccessor http)
{
    public const string Problem = "is this server's own address (the issuer), which names the audience of tokens for no API; an API needs an address of its own.";

    public bool IsThisServer(string uri)
    {
        var issuer = http.HttpContext is { } context ? ServerIssuer.Of(context, server.CurrentValue) : server.CurrentValue.Issuer;
        return issuer is not null && Uri.TryCreate(uri, UriKind.Absolute, out var candidate) && string.Equals(Normalized(candidate), Normalized(issuer), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Scheme, host, port and path without its trailing '/' (APIs' audience checks commonly ignore it).</summary>
    private static string Normalized(Uri uri) => $"{uri.Scheme}://{uri.Authority}{uri.AbsolutePath.TrimEnd('/')}";
}
