using IdentityServer.Authorization;
using IdentityServer.Clients;
using Microsoft.AspNetCore.Cors.Infrastructure;

namespace IdentityServer.Hosting;

/// <summary>
/// CORS for browser apps: discovery, JWKS, token, userinfo and revocation answer cross-origin requests from the
/// origin of a registered redirect URI, and from no one else (no wildcard). Dynamic client registration answers any
/// origin, without credentials: an app in a browser registers before it has a redirect URI here, and the endpoint takes
/// no cookie (a registration access token or an initial access token comes in the Authorization header).
/// </summary>
public sealed class ClientCorsPolicyProvider(ClientOrigins origins) : ICorsPolicyProvider
{
    private static readonly PathString[] CorsPaths =
    [
        ProtocolRoutes.Discovery, ProtocolRoutes.Jwks, ProtocolRoutes.Token, ProtocolRoutes.UserInfo, ProtocolRoutes.Revocation,
    ];

    public async Task<CorsPolicy?> GetPolicyAsync(HttpContext context, string? policyName)
    {
        var origin = context.Request.Headers.Origin.ToString();
        if (!string.IsNullOrEmpty(origin) && context.Request.Path.StartsWithSegments(ProtocolRoutes.Registration, StringComparison.OrdinalIgnoreCase))
        {
            return new CorsPolicyBuilder().AllowAnyOrigin().WithMethods(HttpMethods.Get, HttpMethods.Post, HttpMethods.Put, HttpMethods.Delete).AllowAnyHeader()
                .SetPreflightMaxAge(TimeSpan.FromHours(1)).Build();
        }

        if (string.IsNullOrEmpty(origin) || !CorsPaths.Any(p => context.Request.Path.Equals(p, StringComparison.OrdinalIgnoreCase))
            || !await origins.IsAllowedAsync(origin, context.RequestAborted))
        {
            return null;
        }

        return new CorsPolicyBuilder()
            .WithOrigins(origin)
            .WithMethods(HttpMethods.Get, HttpMethods.Post)
            .AllowAnyHeader()
            // A browser app's script reads these: a DPoP nonce to put in its next proof, and userinfo's challenge.
            .WithExposedHeaders(Dpop.DpopServerHandlers.NonceHeaderName, "WWW-Authenticate")
            .SetPreflightMaxAge(TimeSpan.FromHours(1))
            .Build();
    }
}
