using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Logout;

/// <summary>
/// The logout tokens to send, as rows of <see cref="UserSessionClient"/>: made due as sessions end, taken by a sender for
/// one attempt at a time, settled after it. Every change is a conditional statement on the row, so sessions ending at
/// the same moment, and senders of several instances, each find the row in the state they expect or leave it alone.
/// </summary>
public sealed class LogoutTokenQueue(ApplicationDbContext db)
{
    private DbSet<UserSessionClient> Rows => db.Set<UserSessionClient>();

    /// <summary>
    /// Makes the tokens of the clients that signed in through these sessions due, as the sessions end. A row already due
    /// (another ending of the same session got there first, and a sender may have taken it) is left as it is, so each
    /// client is told once. A client with a front-channel logout URI only has no token to send: its row is forgotten
    /// with the session.
    /// </summary>
    public Task<int> MakeDueAsync(IReadOnlyCollection<string> sessionIds, DateTime now, CancellationToken ct) =>
        Rows.Where(c => sessionIds.Contains(c.SessionId) && c.NotifyAt == null && !c.FrontChannelOnly)
            .ExecuteUpdateAsync(c => c.SetProperty(x => x.NotifyAt, now), ct);

    /// <summary>Due rows, soonest first, leaving out the clients in <paramref name="skipClients"/> (being posted to already).</summary>
    public Task<List<UserSessionClient>> DueAsync(DateTime now, IReadOnlyCollection<string> skipClients, int max, CancellationToken ct) =>
        Rows.AsNoTracking().Where(c => c.NotifyAt != null && c.NotifyAt <= now && !skipClients.Contains(c.ClientId))
            .OrderBy(c => c.NotifyAt).Take(max).ToListAsync(ct);

    /// <summary>When the next row not yet due is due (a retry, or another sender's lease ending); null when there is none.</summary>
    public Task<DateTime?> NextDueAfterAsync(DateTime now, CancellationToken ct) => Rows.Where(c => c.NotifyAt > now).MinAsync(c => c.NotifyAt, ct);

    /// <summary>
    /// Takes <paramref name="row"/> (as read by <see cref="DueAsync"/>) for its next attempt, until
    /// <paramref name="leaseEnd"/>; false when another sender took it since it was read.
    /// </summary>
    public async Task<bool> TakeAsync(UserSessionClient row, DateTime now, DateTime leaseEnd, CancellationToken ct) =>
        await Rows.Where(c => c.SessionId == row.SessionId && c.ClientId == row.ClientId && c.Attempts == row.Attempts && c.NotifyAt <= now)
            .ExecuteUpdateAsync(c => c.SetProperty(x => x.Attempts, row.Attempts + 1).SetProperty(x => x.NotifyAt, leaseEnd), ct) == 1;

    /// <summary>After attempt <paramref name="attempt"/>: the row is deleted (<paramref name="retryAt"/> null: delivered, refused or given up on) or due then.</summary>
    public Task<int> SettleAsync(UserSessionClient row, int attempt, DateTime? retryAt, CancellationToken ct)
    {
        var taken = ThisAttempt(row, attempt);
        return retryAt is { } at ? taken.ExecuteUpdateAsync(c => c.SetProperty(x => x.NotifyAt, at), ct) : taken.ExecuteDeleteAsync(ct);
    }

    /// <summary>Gives back attempt <paramref name="attempt"/> unfinished (the server is stopping): the row is due at once, the attempt not counted.</summary>
    public Task<int> ReleaseAsync(UserSessionClient row, int attempt, DateTime now, CancellationToken ct) =>
        ThisAttempt(row, attempt).ExecuteUpdateAsync(c => c.SetProperty(x => x.NotifyAt, now).SetProperty(x => x.Attempts, attempt - 1), ct);

    /// <summary>
    /// Forgets the clients recorded for sessions no longer on record whose tokens were never made due: an expired
    /// session's (the pruning job). The sessions are found by a read first and the rows deleted by session, so the delete
    /// locks these rows only and cannot deadlock with a session ending (which locks the session's row, then these). A row
    /// recorded in the last minute is left: its session may have ended just as it was recorded, and the request that
    /// recorded it is about to make it due.
    /// </summary>
    public async Task<int> ForgetEndedAsync(DateTime now, CancellationToken ct)
    {
        const int Batch = 1000;
        var settled = now.AddMinutes(-1);
        var forgotten = 0;
        while (true)
        {
            var sessions = await Rows.Where(c => c.NotifyAt == null && c.RecordedAt < settled && !db.Set<Accounts.UserSession>().Any(s => s.Id == c.SessionId))
                .Select(c => c.SessionId).Distinct().Take(Batch).ToListAsync(ct);
            if (sessions.Count > 0)
            {
                forgotten += await Rows.Where(c => sessions.Contains(c.SessionId) && c.NotifyAt == null && c.RecordedAt < settled).ExecuteDeleteAsync(ct);
            }

            if (sessions.Count < Batch)
            {
                return forgotten;
            }
        }
    }

    private IQueryable<UserSessionClient> ThisAttempt(UserSessionClient row, int attempt) =>
        Rows.Where(c => c.SessionId == row.SessionId && c.ClientId == row.ClientId && c.Attempts == attempt);
}
