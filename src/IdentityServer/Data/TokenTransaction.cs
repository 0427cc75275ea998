using IdentityServer.Authorization;
using IdentityServer.Performance;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Data;

/// <summary>
/// Makes the token endpoint's writes one database transaction, committed before the answer is written.
/// OpenIddict redeems the presented code or refresh token, then creates the new token entries, each in its own
/// SaveChanges: a crash between the two would leave the client's refresh token redeemed with no successor ever
/// delivered (its retry then counts as reuse and revokes the whole chain), or a code redeemed with no tokens.
/// Here the redemption is only recorded in the request's DbContext and the new entries are held as they happen
/// (<see cref="DeferredTokenWrites"/>), and all are written together just before the answer, in one transaction (the
/// group-commit writer's, shared with other requests' writes; or the request's own SaveChanges): a crash before it
/// leaves the grant as it was, and whatever the client received was stored first.
/// Writing at the end rather than holding a transaction open also keeps the database's write lock (SQLite has one
/// for the whole file) out of the signing of the new tokens: it was held for most of a refresh, so refreshes ran one
/// at a time.
/// The authorization endpoint's new code is held the same way (<see cref="ReleaseHeldEntries"/>) and inserted once,
/// with its payload, before the response carrying it is written.
/// </summary>
public static class TokenTransaction
{
    public static OpenIddictServerBuilder UseTokenTransactions(this OpenIddictServerBuilder server)
    {
        server.Services.AddScoped<DeferredTokenWrites>();
        return server
            .AddEventHandler(Begin.Descriptor)
            .AddEventHandler(Commit.Descriptor)
            .AddEventHandler(ReleaseHeldEntries.Descriptor);
    }

    /// <summary>Before the presented grant is redeemed (and after the request and client were validated).</summary>
    public sealed class Begin(DeferredTokenWrites writes) : IOpenIddictServerHandler<ProcessSignInContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .UseScopedHandler<Begin>()
            .SetOrder(OpenIddictServerHandlers.RedeemTokenEntry.Descriptor.Order - 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ProcessSignInContext context)
        {
            // Only grants that redeem something (a code, a refresh token, a device code) need the writes to commit
            // together; client credentials write one new entry and stay on the group-commit writer with other
            // requests' entries.
            if (context.EndpointType == OpenIddictServerEndpointType.Token
                && context.Request is { } request && (request.IsAuthorizationCodeGrantType() || request.IsRefreshTokenGrantType() || request.IsDeviceCodeGrantType()))
            {
                writes.RecordsUntilCommit = true;
                var grant = PresentedGrant(context, request);
                writes.GrantToRedeem = grant?.GetTokenId();
                writes.GrantAuthorization = grant?.GetAuthorizationId();
            }
            else if (context.EndpointType == OpenIddictServerEndpointType.Authorization)
            {
                writes.HoldsNewEntries = true;
            }

            return ValueTask.CompletedTask;
        }

        /// <summary>The presented grant OpenIddict's RedeemTokenEntry redeems next (a refresh token only while refresh tokens roll).</summary>
        private static System.Security.Claims.ClaimsPrincipal? PresentedGrant(ProcessSignInContext context, OpenIddictRequest request)
        {
            var authentication = context.Transaction.GetProperty<ProcessAuthenticationContext>(typeof(ProcessAuthenticationContext).FullName!);
            return request switch
            {
                _ when request.IsAuthorizationCodeGrantType() => authentication?.AuthorizationCodePrincipal,
                _ when request.IsDeviceCodeGrantType() => authentication?.DeviceCodePrincipal,
                _ when request.IsRefreshTokenGrantType() && !context.Options.DisableRollingRefreshTokens => authentication?.RefreshTokenPrincipal,
                _ => null,
            };
        }
    }

    /// <summary>
    /// Before the response (tokens or an error) is written. Without it (an exception on the way) nothing was written
    /// and the recorded changes go with the request's DbContext.
    /// </summary>
    public sealed class Commit(ApplicationDbContext db, DeferredTokenWrites writes, TokenWriteQueue writer, IOptions<PerformanceOptions> performance,
        IServiceProvider services, ILogger<Commit> logger) : IOpenIddictServerHandler<ApplyTokenResponseContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyTokenResponseContext>()
            .UseScopedHandler<Commit>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<ApplyTokenResponseContext>.Descriptor.Order - 1000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ApplyTokenResponseContext context)
        {
            if (!writes.RecordsUntilCommit)
            {
                return;
            }

            writes.RecordsUntilCommit = false;
            var grant = writes.GrantToRedeem;
            var authorization = writes.GrantAuthorization;
            writes.GrantToRedeem = writes.GrantAuthorization = null;
            if (!string.IsNullOrEmpty(context.Response.Error))
            {
                // Refused after all: nothing of this request is written.
                Discard();
                return;
            }

            if (grant is not null && !RedemptionRecorded(grant))
            {
                // OpenIddict redeems the grant with TryRedeemAsync, which answers false on a failure (for a refresh
                // token the answer is not even checked): new tokens without the redemption would leave the grant
                // usable again. Nothing is written, and the grant stays as it was.
                logger.LogError(TokenEvents.RedemptionNotRecorded,
                    "A {GrantType} grant for client {ClientId} was not recorded as redeemed; this request's tokens were discarded.",
                    context.Request?.GrantType, context.Request?.ClientId);
                RefuseGrant(context, "The specified grant could not be redeemed.");
                return;
            }

            if (await WriteAsync(context.CancellationToken))
            {
                writes.HeldWereWritten();
                return;
            }

            // The redemption's concurrency check failed: another request redeemed the same code or refresh token
            // (or revoked it) after this one validated it. The tokens made here are never delivered.
            logger.LogWarning(TokenEvents.ConcurrentRedemption,
                "A {GrantType} grant for client {ClientId} was redeemed by a concurrent request; this request's tokens were discarded.",
                context.Request?.GrantType, context.Request?.ClientId);
            RefuseGrant(context, "The specified grant has already been redeemed.");
            if (authorization is not null && RaceCountsAsReplay(context))
            {
                await RevokeRacedGrantAsync(context, authorization);
            }
        }

        /// <summary>
        /// A code or device code redeemed twice at once is a replay like one redeemed twice in turn (RFC 6749 4.1.2: an
        /// intercepted code racing the client's own request), and so is a refresh token without a reuse leeway (RFC 9700
        /// 4.14.2). Within a leeway the other request was allowed to redeem it again, so the race is not held against it.
        /// </summary>
        private static bool RaceCountsAsReplay(ApplyTokenResponseContext context) =>
            context.Request is { } request && (!request.IsRefreshTokenGrantType()
                || context.Options.RefreshTokenReuseLeeway is not { } leeway || leeway <= TimeSpan.Zero);

        /// <summary>
        /// Ends the grant as a replay seen at validation does (<see cref="GrantRevocation.RevokeGrantOfReplayedToken"/>):
        /// the winner's tokens were committed before this request's write failed, so they are revoked with it. Not
        /// cancelled with the request, and a failure leaves the refusal as it is.
        /// </summary>
        private async Task RevokeRacedGrantAsync(ApplyTokenResponseContext context, string authorization)
        {
            try
            {
                var revoked = await GrantRevocation.RevokeGrantAndItsTokensAsync(services.GetRequiredService<IOpenIddictAuthorizationManager>(),
                    services.GetRequiredService<IOpenIddictTokenManager>(), authorization, CancellationToken.None);
                if (revoked is not null)
                {
                    logger.LogWarning(TokenEvents.ReplayedGrantRevoked,
                        "A {GrantType} grant for client {ClientId} was redeemed by two requests at once: its grant {AuthorizationId} and its {Count} tokens are revoked",
                        context.Request?.GrantType, context.Request?.ClientId, authorization, revoked);
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.LogError(TokenEvents.ReplayedGrantRevoked, e, "A {GrantType} grant redeemed by two requests at once could not be revoked (grant {AuthorizationId})",
                    context.Request?.GrantType, authorization);
            }
        }

        /// <summary>Nothing of this request is written, and it answers invalid_grant instead of the tokens it made.</summary>
        private void RefuseGrant(ApplyTokenResponseContext context, string description)
        {
            Discard();
            context.Response = new OpenIddictResponse { Error = OpenIddictConstants.Errors.InvalidGrant, ErrorDescription = description };
        }

        /// <summary>
        /// Writes the redemption and the new entries together, in one transaction; false if the redeemed entry changed
        /// since it was read. They go to the group-commit writer with other requests' writes when they are token
        /// entries only, else through the request's own SaveChanges.
        /// </summary>
        private async Task<bool> WriteAsync(CancellationToken cancellationToken)
        {
            if (performance.Value.GroupCommitTokenWrites && TokenRowWriter.Supports(db) && TokenChangesOf(db, writes.Held) is { } changes)
            {
                if (!await writer.WriteAsync(changes, cancellationToken))
                {
                    return false;
                }

                db.ChangeTracker.AcceptAllChanges();
                return true;
            }

            foreach (var held in writes.Held)
            {
                BatchingTokenStore.AddWithOwnerIds(db, held.Row);
            }

            try
            {
                await db.SaveChangesAsync(cancellationToken);
                return true;
            }
            catch (DbUpdateConcurrencyException)
            {
                return false;
            }
        }

        /// <summary>
        /// The request's writes as the writer takes them: its held new entries and at most one changed stored entry
        /// (the redeemed grant). Null when anything else is pending in its context, which then keeps SaveChanges.
        /// </summary>
        private static TokenChanges? TokenChangesOf(ApplicationDbContext db, IReadOnlyList<DeferredTokenWrites.HeldEntry> held)
        {
            TokenRow? update = null;
            string? expectedConcurrencyToken = null, expectedStatus = null;
            foreach (var entry in db.ChangeTracker.Entries())
            {
                switch (entry)
                {
                    case { State: EntityState.Unchanged }:
                        continue;
                    case { State: EntityState.Modified, Entity: OpenIddictEntityFrameworkCoreToken token } when update is null:
                        update = new TokenRow(token,
                            (string?)entry.Property(BatchingTokenStore.ApplicationIdProperty).CurrentValue,
                            (string?)entry.Property(BatchingTokenStore.AuthorizationIdProperty).CurrentValue);
                        expectedConcurrencyToken = (string?)entry.OriginalValues[nameof(OpenIddictEntityFrameworkCoreToken.ConcurrencyToken)];
                        expectedStatus = (string?)entry.OriginalValues[nameof(OpenIddictEntityFrameworkCoreToken.Status)];
                        continue;
                    default:
                        return null;
                }
            }

            return new TokenChanges([.. held.Select(entry => entry.Row)], update, expectedConcurrencyToken, expectedStatus);
        }

        /// <summary>Whether the presented grant's entry was recorded as changed (redeemed: the store's update marks it modified).</summary>
        private bool RedemptionRecorded(string grant) =>
            TrackedEntities.Find<OpenIddictEntityFrameworkCoreToken>(db, grant) is { } entry && TrackedEntities.Entry(db, entry).State == EntityState.Modified;

        /// <summary>Nothing this request recorded or held is written.</summary>
        private void Discard()
        {
            db.ChangeTracker.Clear();
            writes.Held.Clear();
        }
    }

    /// <summary>
    /// Before an authorization response (a redirect or form carrying the code) is written: the held entries are
    /// written and committed first, so a client never receives a code the token endpoint cannot find.
    /// </summary>
    public sealed class ReleaseHeldEntries(DeferredTokenWrites writes, TokenWriteQueue writer) : IOpenIddictServerHandler<ApplyAuthorizationResponseContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyAuthorizationResponseContext>()
            .UseScopedHandler<ReleaseHeldEntries>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.Authentication.ProcessSelfRedirection.Descriptor.Order - 1000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ApplyAuthorizationResponseContext context)
        {
            writes.HoldsNewEntries = false;
            if (writes.Held.Count + writes.HeldAuthorizations.Count == 0 || !string.IsNullOrEmpty(context.Response.Error))
            {
                return;
            }

            // All in one write, so they share one of the writer's batches.
            await writer.WriteAsync(new TokenChanges([.. writes.Held.Select(entry => entry.Row)], NewAuthorizations: [.. writes.HeldAuthorizations]),
                context.CancellationToken);
            writes.HeldWereWritten();
        }
    }
}

/// <summary>How this request's token writes are deferred (see <see cref="TokenTransaction"/>).</summary>
public sealed class DeferredTokenWrites
{
    /// <summary>
    /// A redeeming token request: the redemption of the presented grant is recorded in the request's DbContext and the
    /// new token entries are held, and all are written by <see cref="TokenTransaction.Commit"/>, instead of each one at once.
    /// </summary>
    public bool RecordsUntilCommit { get; set; }

    /// <summary>
    /// An authorization response: its new entries (the code) are held until the response is about to be written and
    /// then handed to the group-commit writer once, with the payload they got after being created (the stock flow
    /// inserts a code, then updates it with its payload: two writes).
    /// </summary>
    public bool HoldsNewEntries { get; set; }

    /// <summary>
    /// With <see cref="RecordsUntilCommit"/>: the id of the presented grant's entry, which must be recorded as redeemed
    /// before anything is written (null when OpenIddict redeems nothing).
    /// </summary>
    public string? GrantToRedeem { get; set; }

    /// <summary>With <see cref="GrantToRedeem"/>: the authorization (grant) the presented code or token was issued under.</summary>
    public string? GrantAuthorization { get; set; }

    /// <summary>New entries not written yet (see <see cref="RecordsUntilCommit"/> and <see cref="HoldsNewEntries"/>).</summary>
    internal List<HeldEntry> Held { get; } = [];

    /// <summary>
    /// With <see cref="HoldsNewEntries"/>: the new ad-hoc authorization of the held code (each sign-in's grant), written
    /// with it (<see cref="AuthorizationLookupStore"/>), so a sign-in stays one write.
    /// </summary>
    internal List<AuthorizationRow> HeldAuthorizations { get; } = [];

    /// <summary>The held entries are stored: from now on they are entries like any other.</summary>
    internal void HeldWereWritten()
    {
        Held.ForEach(entry => entry.Owners.Written = true);
        Held.Clear();
        HeldAuthorizations.Clear();
    }

    internal bool IsHeld(OpenIddictEntityFrameworkCoreToken token) => Held.Exists(entry => ReferenceEquals(entry.Token, token));

    /// <summary>A held new entry, with its client and authorization by id as last set (<see cref="NewTokenOwners"/>).</summary>
    internal sealed record HeldEntry(OpenIddictEntityFrameworkCoreToken Token, NewTokenOwners Owners)
    {
        /// <summary>The entry as the writer takes it, with its client and authorization as they are now.</summary>
        public TokenRow Row => new(Token, Owners.ApplicationId, Owners.AuthorizationId);
    }
}
