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
    public static OpenIddictServerBuilder RevokeGrantWithItsRefreshToken(this OpenIddictServerBuilder server)
    {
        server.Services.AddSingleton<UnlessGrantRevoked>();
        return server.AddEventHandler(RevokeGrantOfRefreshToken.Descriptor).Configure(options =>
        {
            var index = options.Handlers.IndexOf(OpenIddictServerHandlers.Revocation.RevokeToken.Descriptor);
            options.Handlers[index] = OpenIddictServerHandlerDescriptor.CreateBuilder<HandleRevocationRequestContext>()
                .Import(OpenIddictServerHandlers.Revocation.RevokeToken.Descriptor).AddFilter<UnlessGrantRevoked>().Build();
        });
    }

    /// <summary>Set on the transaction once the token's grant, and with it the token, is revoked.</summary>
    private const string GrantRevokedProperty = "identityserver:grant_revoked";

    /// <summary>
    /// Keeps OpenIddict's revocation of the token itself from running after its grant's: the token is revoked by then,
    /// and OpenIddict would write over the entry as it read it, which fails (answering unsupported_token_type) when a
    /// refresh redeemed the token in between.
    /// </summary>
    public sealed class UnlessGrantRevoked : IOpenIddictServerHandlerFilter<HandleRevocationRequestContext>
    {
        public ValueTask<bool> IsActiveAsync(HandleRevocationRequestContext context) =>
            new(!context.Transaction.Properties.ContainsKey(GrantRevokedProperty));
    }

    public sealed class RevokeGrantOfRefreshToken(IOpenIddictAuthorizationManager authorizations, IOpenIddictTokenManager tokens,
        ILogger<RevokeGrantOfRefreshToken> logger) : IOpenIddictServerHandler<HandleRevocationRequestContext>
    {
        /// <summary>
        /// Instead of OpenIddict's revocation of the token alone: the grant first, then all its entries by their
        /// authorization (this token, and whatever a refresh running meanwhile redeemed it for), whatever their state
        /// now. Another client's token never comes here: that request was refused before.
        /// </summary>
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<HandleRevocationRequestContext>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireDegradedModeDisabled>()
            .UseScopedHandler<RevokeGrantOfRefreshToken>()
            .SetOrder(OpenIddictServerHandlers.Revocation.RevokeToken.Descriptor.Order - 1)
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

            // The grant before its entries: an entry a concurrent refresh commits after the bulk revocation read the
            // table (PostgreSQL) is refused anyway, for its revoked authorization.
            await authorizations.TryRevokeAsync(authorization, context.CancellationToken);
            var revoked = await tokens.RevokeByAuthorizationIdAsync(authorizationId, context.CancellationToken);
            context.Transaction.Properties[GrantRevokedProperty] = true;
            logger.LogInformation(TokenEvents.GrantRevoked, "Client {ClientId} revoked a refresh token: its grant {AuthorizationId} and its {Count} tokens are revoked",
                context.Request.ClientId, authorizationId, revoked);
        }
    }
}
