using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Authorization;

/// <summary>
/// The tokens of a refresh. One that asks for fewer scopes (RFC 6749 6) gets an access token for those only: OpenIddict
/// narrows the token's scope claim but keeps the grant's audiences and user claims, so the API of a scope left out
/// would still take it. Here its audiences become those of the scopes left (never more than it had), and the user
/// claims of the scopes left out go from it and from the identity token. The new refresh token keeps the grant's
/// scopes (RFC 6749 6: the same scope as the one presented). And a refreshed identity token has no <c>nonce</c>
/// (OpenID Connect Core 12.2): the nonce belonged to the authorization request.
/// </summary>
public static class RefreshedTokens
{
    public static OpenIddictServerBuilder NarrowRefreshedTokens(this OpenIddictServerBuilder server)
    {
        server.Services.AddSingleton<RequireRefreshGrant>();
        return server.AddEventHandler(Narrow.Descriptor);
    }

    public sealed class Narrow(IOpenIddictScopeManager scopes) : IOpenIddictServerHandler<ProcessSignInContext>
    {
        /// <summary>Once OpenIddict has prepared the principals of the tokens, before it makes them.</summary>
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .AddFilter<RequireRefreshGrant>()
            .UseScopedHandler<Narrow>()
            .SetOrder(PrepareIdentityTokenPrincipal.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ProcessSignInContext context)
        {
            context.IdentityTokenPrincipal?.RemoveClaims(Claims.Nonce);
            if (string.IsNullOrEmpty(context.Request.Scope) || context.AccessTokenPrincipal is not { } accessToken)
            {
                return;
            }

            var left = accessToken.GetScopes();
            var resources = await scopes.ListResourcesAsync(left, context.CancellationToken).ToListAsync(context.CancellationToken);
            accessToken.SetAudiences(accessToken.GetAudiences().Intersect(resources, StringComparer.Ordinal));
            UserPrincipalFactory.RemoveUserClaimsOutside(accessToken, left);
            if (context.IdentityTokenPrincipal is { } identityToken)
            {
                UserPrincipalFactory.RemoveUserClaimsOutside(identityToken, left);
            }
        }
    }

    /// <summary>A refresh grant at the token endpoint: the handler (and the scope manager it needs) is made for nothing else.</summary>
    public sealed class RequireRefreshGrant : IOpenIddictServerHandlerFilter<ProcessSignInContext>
    {
        public ValueTask<bool> IsActiveAsync(ProcessSignInContext context) =>
            new(context.EndpointType is OpenIddictServerEndpointType.Token && context.Request.IsRefreshTokenGrantType());
    }
}
