using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// Revoking a refresh token ends the grant it belongs to, with every access token issued under it (RFC 7009 2.1: "the
/// authorization server SHOULD also invalidate all access tokens based on the same authorization grant"). Each sign-in
/// (code) and each device approval has its own ad-hoc authorization, so that grant is one sign-in's tokens: the user's
/// other sessions with the client, and the remembered consent (a permanent authorization, which no token belongs to),
/// stay.
/// </summary>
public static class GrantRevocation
{
    public static OpenIddictServerBuilder RevokeGrantWithItsRefreshToken(this OpenIddictServerBuilder server) =>
        server.AddEventHandler(RevokeGrantOfRefreshToken.Descriptor);

    public sealed class RevokeGrantOfRefreshToken(IOpenIddictAuthorizationManager authorizations, IOpenIddictTokenManager tokens,
        ILogger<RevokeGrantOfRefreshToken> logger) : IOpenIddictServerHandler<HandleRevocationRequestContext>
    {
        /// <summary>Just after OpenIddict revoked the token itself; not when it refused to (another client's token, say).</summary>
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<HandleRevocationRequestContext>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireDegradedModeDisabled>()
            .UseScopedHandler<RevokeGrantOfRefreshToken>()
            .SetOrder(OpenIddictServerHandlers.Revocation.RevokeToken.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(HandleRevocationRequestContext context)
        {
            if (context.IsRejected || context.GenericTokenPrincipal is not { } token || !token.HasTokenType(TokenTypeIdentifiers.RefreshToken)
                || token.GetAuthorizationId() is not { Length: > 0 } authorizationId
                || await authorizations.FindByIdAsync(authorizationId, context.CancellationToken) is not { } authorization
                || !await authorizations.HasTypeAsync(authorization, AuthorizationTypes.AdHoc, context.CancellationToken))
            {
                return;
            }

            await authorizations.TryRevokeAsync(authorization, context.CancellationToken);
            var revoked = await tokens.RevokeByAuthorizationIdAsync(authorizationId, context.CancellationToken);
            logger.LogInformation(TokenEvents.GrantRevoked, "Client {ClientId} revoked a refresh token: its grant {AuthorizationId} and its {Count} tokens are revoked",
                context.Request.ClientId, authorizationId, revoked);
        }
    }
}
