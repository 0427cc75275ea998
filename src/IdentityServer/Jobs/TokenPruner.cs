using System.Diagnostics;
using IdentityServer.Accounts;
using IdentityServer.Clients;
using IdentityServer.Data;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;

namespace IdentityServer.Jobs;

/// <summary>
/// Removes OpenIddict tokens and authorizations that can no longer be used (expired, redeemed, revoked, invalid,
/// or ad-hoc authorizations left without tokens) and were created before the retention period. Valid entries
/// and permanent consents are kept whatever their age. Also removes the rows of login sessions past their maximum
/// lifetime (<see cref="UserSession"/>), which no cookie can use any more, and the records of client assertions, DPoP
/// proofs and passkey sign-ins past their expiry (<see cref="UsedClientAssertion"/>, <see cref="Dpop.UsedDpopProof"/>,
/// <see cref="UsedPasskeyChallenge"/>), which are refused as expired anyway.
/// </summary>
public sealed class TokenPruner(
    IOpenIddictTokenManager tokens,
    IOpenIddictAuthorizationManager authorizations,
    UserSessions sessions,
    UsedClientAssertions clientAssertions,
    Dpop.UsedDpopProofs dpopProofs,
    UsedPasskeyChallenges passkeyChallenges,
    IOptions<TokenPruningOptions> options,
    IOptions<Authorization.TokenOptions> tokenOptions,
    TimeProvider clock,
    ILogger<TokenPruner> logger)
{
    public async Task<(long Tokens, long Authorizations, long Sessions, long ClientAssertions, long DpopProofs, long PasskeyChallenges)> PruneAsync(CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var threshold = clock.GetUtcNow() - options.Value.Retention;
        if (options.Value.Retention < tokenOptions.Value.RefreshTokenLifetime)
        {
            // Allowed (a busy server may want its table small), but it weakens refresh token rotation: say so each run.
            logger.LogWarning(JobEvents.RetentionShorterThanRefreshTokens,
                "TokenPruning:Retention ({Retention}) is shorter than Tokens:RefreshTokenLifetime ({RefreshTokenLifetime}): a redeemed refresh "
                + "token's entry may be pruned while the token could still be presented, and presented again it is refused but no longer ends its grant",
                options.Value.Retention, tokenOptions.Value.RefreshTokenLifetime);
        }

        // Tokens first: an authorization is only prunable once its tokens are gone. A batch the database aborted to
        // break a deadlock with token writes in flight (PostgreSQL, SQL Server) fails the whole call once the other
        // batches are done (OpenIddict gathers the failures): the call is run again, as deleting by criteria is safe to
        // repeat. What an aborted call had pruned is not counted then.
        var prunedTokens = await DeadlockRetry.RunAsync(() => tokens.PruneAsync(threshold, cancellationToken).AsTask(), logger, "Pruning tokens");
        var prunedAuthorizations = await DeadlockRetry.RunAsync(() => authorizations.PruneAsync(threshold, cancellationToken).AsTask(), logger,
            "Pruning authorizations");
        var prunedSessions = await DeadlockRetry.RunAsync(() => sessions.PruneAsync(cancellationToken), logger, "Pruning sessions");
        var prunedAssertions = await DeadlockRetry.RunAsync(() => clientAssertions.PruneAsync(cancellationToken), logger, "Pruning client assertions");
        var prunedProofs = await DeadlockRetry.RunAsync(() => dpopProofs.PruneAsync(cancellationToken), logger, "Pruning DPoP proofs");
        var prunedChallenges = await DeadlockRetry.RunAsync(() => passkeyChallenges.PruneAsync(cancellationToken), logger, "Pruning passkey challenges");

        logger.LogInformation(JobEvents.TokensPruned,
            "Pruned {Tokens} token(s) and {Authorizations} authorization(s) older than {Threshold}, {Sessions} ended session(s), "
            + "{ClientAssertions} expired client assertion(s), {DpopProofs} expired DPoP proof(s) and {PasskeyChallenges} expired passkey "
            + "challenge(s), in {ElapsedMs} ms",
            prunedTokens, prunedAuthorizations, threshold, prunedSessions, prunedAssertions, prunedProofs, prunedChallenges, stopwatch.ElapsedMilliseconds);
        return (prunedTokens, prunedAuthorizations, prunedSessions, prunedAssertions, prunedProofs, prunedChallenges);
    }
}

public static class JobEvents
{
    public static readonly EventId TokensPruned = new(7001, nameof(TokensPruned));
    public static readonly EventId PruningFailed = new(7002, nameof(PruningFailed));
    public static readonly EventId RetentionShorterThanRefreshTokens = new(7003, nameof(RetentionShorterThanRefreshTokens));
}
