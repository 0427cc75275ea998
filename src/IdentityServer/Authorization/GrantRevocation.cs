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
/// stay. A replayed code or a reused refresh token ends its grant the same way.
/// </summary>
public static class GrantRevocation
{
    /// <summary>OpenIddict's check of the token entry, followed by <see cref="RevokeGrantOfReplayedToken"/>.</summary>
    public static OpenIddictServerBuilder RevokeGrantOfReplayedTokens(this OpenIddictServerBuilder server)
    {
        server.Services.AddScoped<RevokeGrantOfReplayedToken>();
        return server.Configure(options =>
        {
            var index = options.Handlers.IndexOf(OpenIddictServerHandlers.Protection.ValidateTokenEntry.Descriptor);
            options.Handlers[index] = RevokeGrantOfReplayedToken.Descriptor;
        });
    }

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
                || await RevokeGrantAndItsTokensAsync(authorizations, tokens, authorizationId, context.CancellationToken) is not { } revoked)
            {
                return;
            }

            context.Transaction.Properties[GrantRevokedProperty] = true;
            logger.LogInformation(TokenEvents.GrantRevoked, "Client {ClientId} revoked a refresh token: its grant {AuthorizationId} and its {Count} tokens are revoked",
                context.Request.ClientId, authorizationId, revoked);
        }
    }

    /// <summary>
    /// Revokes a sign-in's or device approval's own (ad-hoc) grant, then every token entry under it, whatever its state;
    /// null, and nothing revoked, when the authorization is gone or is a remembered consent.
    /// </summary>
    /// <returns>How many token entries were revoked.</returns>
    public static async Task<long?> RevokeGrantAndItsTokensAsync(IOpenIddictAuthorizationManager authorizations, IOpenIddictTokenManager tokens,
        string authorizationId, CancellationToken cancellationToken)
    {
        if (await authorizations.FindByIdAsync(authorizationId, cancellationToken) is not { } authorization
            || !await authorizations.HasTypeAsync(authorization, AuthorizationTypes.AdHoc, cancellationToken))
        {
            return null;
        }

        // The grant before its entries: an entry a concurrent refresh commits after the bulk revocation read the table
        // (PostgreSQL) is refused anyway, for its revoked authorization.
        await authorizations.TryRevokeAsync(authorization, cancellationToken);
        return await tokens.RevokeByAuthorizationIdAsync(authorizationId, cancellationToken);
    }

    /// <summary>
    /// OpenIddict answers a replayed code or a reused refresh token (redeemed before, past the reuse leeway) by revoking
    /// the tokens of its authorization, but not the authorization. A token made under it by a request already past its
    /// checks at that moment stayed valid: a token exchange of the grant's access token, or a refresh whose entries a
    /// PostgreSQL transaction committed while the bulk revocation ran. Here OpenIddict's check runs as before, and when
    /// it refuses a token that had been redeemed, the grant is revoked too: whatever is made under it is refused on use.
    /// The reuse leeway stays OpenIddict's: a token within it is not refused, and its grant is left alone.
    /// A user code is no client's credential and never goes to OpenIddict's check: see <see cref="RefuseUnlessWaitingAsync"/>.
    /// </summary>
    public sealed class RevokeGrantOfReplayedToken(OpenIddictServerHandlers.Protection.ValidateTokenEntry stock, IOpenIddictTokenManager tokens,
        IOpenIddictAuthorizationManager authorizations, ILogger<RevokeGrantOfReplayedToken> logger) : IOpenIddictServerHandler<ValidateTokenContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateTokenContext>()
            .Import(OpenIddictServerHandlers.Protection.ValidateTokenEntry.Descriptor)
            .UseScopedHandler<RevokeGrantOfReplayedToken>()
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ValidateTokenContext context)
        {
            if (context.Principal?.HasTokenType(TokenTypeIdentifiers.Private.UserCode) is true)
            {
                await RefuseUnlessWaitingAsync(context);
                return;
            }

            await stock.HandleAsync(context);
            if (!context.IsRejected || context.AuthorizationId is not { Length: > 0 } authorizationId || context.TokenId is not { Length: > 0 } tokenId)
            {
                return;
            }

            // Not cancelled with the request, as OpenIddict's own revocation of the grant's tokens is not: a replaying
            // client that hangs up must not keep the grant alive. A failure leaves the refusal as it is (the tokens are
            // revoked; a later presentation tries again).
            try
            {
                await RevokeIfReplayedAsync(context, authorizationId, tokenId);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.LogError(TokenEvents.ReplayedGrantRevoked, e, "A redeemed {TokenType} was presented again, and its grant {AuthorizationId} could not be revoked",
                    context.Principal?.GetTokenType(), authorizationId);
            }
        }

        /// <summary>
        /// A user code is checked at the verification page, which anyone who saw the device's screen may open, signed in or
        /// not (the code is checked before the page asks for a sign-in), and which the user may simply reload. OpenIddict
        /// treats a used user code as a replayed token and revokes the tokens of the device's grant (and so would we,
        /// after it): anyone could end the device's sign-in. Here a user code that is no longer waiting (approved,
        /// denied) is only refused, and the page says it is not valid.
        /// </summary>
        private async Task RefuseUnlessWaitingAsync(ValidateTokenContext context)
        {
            if (await tokens.FindByIdAsync(context.TokenId!, context.CancellationToken) is not { } token
                || !await tokens.HasStatusAsync(token, Statuses.Valid, context.CancellationToken))
            {
                context.Reject(Errors.InvalidToken, "The user code is no longer valid.");
            }
        }

        private async Task RevokeIfReplayedAsync(ValidateTokenContext context, string authorizationId, string tokenId)
        {
            // A redemption date on a refused token: it was redeemed, and presented again (its status says revoked now,
            // as OpenIddict revoked the grant's tokens with it).
            if (await tokens.FindByIdAsync(tokenId, CancellationToken.None) is not { } token
                || await tokens.GetRedemptionDateAsync(token, CancellationToken.None) is null
                || await authorizations.FindByIdAsync(authorizationId, CancellationToken.None) is not { } authorization
                || !await authorizations.HasTypeAsync(authorization, AuthorizationTypes.AdHoc, CancellationToken.None)
                || await authorizations.HasStatusAsync(authorization, Statuses.Revoked, CancellationToken.None))
            {
                return;
            }

            if (await authorizations.TryRevokeAsync(authorization, CancellationToken.None))
            {
                logger.LogWarning(TokenEvents.ReplayedGrantRevoked, "A redeemed {TokenType} was presented again: its grant {AuthorizationId} is revoked",
                    context.Principal?.GetTokenType(), authorizationId);
            }
            else
            {
                // Its entry changed meanwhile: only revocations write to an ad-hoc grant, so another one got there first.
                logger.LogWarning(TokenEvents.ReplayedGrantRevoked, "A redeemed {TokenType} was presented again; its grant {AuthorizationId} changed meanwhile and was not revoked here",
                    context.Principal?.GetTokenType(), authorizationId);
            }
        }
    }
}
