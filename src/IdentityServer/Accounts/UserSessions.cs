using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using IdentityServer.Data;
using IdentityServer.Logout;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts;

/// <summary>The rows of <see cref="UserSession"/>: started at sign-in, checked on every request with a session cookie, deleted at sign-out.</summary>
public sealed class UserSessions(ApplicationDbContext db, TimeProvider clock, IOptions<AccountsOptions> options, LogoutTokenQueue logoutTokens,
    BackChannelLogoutSender logouts, ILogger<UserSessions> logger)
{
    /// <summary>Compiled per model: a compiled query refuses a context of another model (the tests run several providers).</summary>
    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, string, DateTime, CancellationToken, Task<ApplicationUser?>>> UserOfLiveSession = [];

    /// <summary>
    /// A sign-in: a new session, or, when <paramref name="continuing"/> names a live session of the same user (signing
    /// in again to step up or because an application asked for a fresh sign-in), that session with the new sign-in's
    /// time and methods, so that the applications signed in through it carry on (no logout tokens).
    /// </summary>
    public async Task<UserSession> StartAsync(ApplicationUser user, DateTimeOffset signedInAt, IEnumerable<string> methods, string? browser,
        string? continuing, CancellationToken ct)
    {
        var session = new UserSession
        {
            Id = continuing ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
            UserId = user.Id,
            SignedInAt = signedInAt.UtcDateTime,
            ExpiresAt = (signedInAt + options.Value.SessionMaxLifetime).UtcDateTime,
            LastSeenAt = signedInAt.UtcDateTime,
            Methods = string.Join(' ', methods.Distinct(StringComparer.Ordinal)),
            Browser = UserSession.BrowserName(browser),
        };
        if (continuing is not null && await db.Set<UserSession>().Where(s => s.Id == continuing && s.UserId == user.Id)
                .ExecuteUpdateAsync(s => s.SetProperty(x => x.SignedInAt, session.SignedInAt).SetProperty(x => x.ExpiresAt, session.ExpiresAt)
                    .SetProperty(x => x.LastSeenAt, session.LastSeenAt).SetProperty(x => x.Methods, session.Methods)
                    .SetProperty(x => x.Browser, session.Browser), ct) == 1)
        {
            return session;
        }

        if (continuing is not null)
        {
            return await StartAsync(user, signedInAt, methods, browser, continuing: null, ct);
        }

        db.Add(session);
        await db.SaveChangesAsync(ct);
        db.Entry(session).State = EntityState.Detached;
        return session;
    }

    /// <summary>
    /// The session's user when the session is still on record and within its lifetime, else null; one query, the user
    /// tracked as Identity's own lookup would (so the page's next lookup of the user costs nothing).
    /// </summary>
    public Task<ApplicationUser?> FindUserAsync(string userId, string sessionId, CancellationToken ct) =>
        UserOfLiveSession.GetValue(db.Model, static _ => EF.CompileAsyncQuery((DbContext context, string user, string session, DateTime now, CancellationToken token) =>
            context.Set<ApplicationUser>().AsTracking().FirstOrDefault(u => u.Id == user
                && context.Set<UserSession>().Any(s => s.Id == session && s.UserId == u.Id && s.ExpiresAt > now))))(
            db, userId, sessionId, clock.GetUtcNow().UtcDateTime, ct);

    /// <summary>The user's sessions that have not ended, neither at their lifetime nor idle past <c>Accounts:SessionIdleTimeout</c>; newest first.</summary>
    public async Task<List<UserSession>> ListAsync(string userId, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        var idleSince = now - options.Value.SessionIdleTimeout;
        return await db.Set<UserSession>().AsNoTracking()
            .Where(s => s.UserId == userId && s.ExpiresAt > now && s.LastSeenAt > idleSince)
            .OrderByDescending(s => s.SignedInAt)
            .ToListAsync(ct);
    }

    /// <summary>One session of the user, whether or not <see cref="ListAsync"/> would list it.</summary>
    public Task<UserSession?> FindAsync(string userId, string sessionId, CancellationToken ct) =>
        db.Set<UserSession>().AsNoTracking().FirstOrDefaultAsync(s => s.Id == sessionId && s.UserId == userId, ct);

    /// <summary>Records that the session's cookie was re-issued, for <see cref="ListAsync"/>.</summary>
    public Task SeenAsync(string sessionId, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        return db.Set<UserSession>().Where(s => s.Id == sessionId).ExecuteUpdateAsync(s => s.SetProperty(x => x.LastSeenAt, now), ct);
    }

    /// <summary>Ends one session of the user (only theirs: the id comes from a form).</summary>
    public Task<int> EndAsync(string userId, string sessionId, CancellationToken ct) =>
        EndWhereAsync(userId, db.Set<UserSession>().Where(s => s.Id == sessionId && s.UserId == userId), ct);

    /// <summary>Ends every session of the user but <paramref name="keep"/>.</summary>
    public Task<int> EndAllAsync(string userId, string? keep, CancellationToken ct) =>
        EndWhereAsync(userId, db.Set<UserSession>().Where(s => s.UserId == userId && s.Id != keep), ct);

    /// <summary>
    /// Deletes the sessions' rows, and makes the logout tokens of the clients that signed in through them due, in one
    /// transaction (the caller's when it is in one: an admin change ends sessions with its audit entry). Of endings
    /// racing over one session only the first finds its clients not yet due, so each client is told once. The sender
    /// is woken once the ending has committed.
    /// </summary>
    private async Task<int> EndWhereAsync(string userId, IQueryable<UserSession> ending, CancellationToken ct) =>
        await ending.Select(s => s.Id).ToListAsync(ct) is { Count: > 0 } ids ? await EndByIdsAsync(userId, ids, ct) : 0;

    /// <summary>Ends the sessions <paramref name="ids"/> of the user, as read a moment ago: another ending may have ended some since.</summary>
    internal async Task<int> EndByIdsAsync(string userId, IReadOnlyCollection<string> ids, CancellationToken ct)
    {
        await using var transaction = db.Database.CurrentTransaction is null ? await db.Database.BeginTransactionAsync(ct) : null;
        // The session rows go first: a client being recorded meanwhile waits on their locks, then finds the session
        // gone and makes its own row due (SessionClients.RecordAsync).
        var ended = await db.Set<UserSession>().Where(s => ids.Contains(s.Id)).ExecuteDeleteAsync(ct);
        var due = await logoutTokens.MakeDueAsync(ids, clock.GetUtcNow().UtcDateTime, ct);
        if (due > 0)
        {
            AfterCommit.Run(db, () =>
            {
                logger.LogInformation(LogoutEvents.LogoutQueued, "{Count} logout token(s) due: {Ended} session(s) of user {UserId} ended", due, ended, userId);
                logouts.Wake();
            });
        }

        if (transaction is not null)
        {
            await transaction.CommitAsync(ct);
        }

        return ended;
    }

    /// <summary>
    /// Deletes the rows of sessions past their lifetime (the token pruning job), and what was recorded of the clients
    /// that signed in through a session no longer on record and whose logout is not due (an expired session's; one
    /// recorded in the last minute may still be on its way to being made due).
    /// </summary>
    public async Task<int> PruneAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        var pruned = await db.Set<UserSession>().Where(s => s.ExpiresAt <= now).ExecuteDeleteAsync(ct);
        await logoutTokens.ForgetEndedAsync(now, ct);
        return pruned;
    }
}
