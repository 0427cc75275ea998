using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts.Email;

/// <summary>
/// The <see cref="OutgoingEmail"/> rows as a work list: added as emails are queued, taken by a sender for one attempt
/// at a time (a conditional update, so two instances never send the same attempt), settled after it.
/// </summary>
public sealed class EmailOutbox(ApplicationDbContext db)
{
    private DbSet<OutgoingEmail> Rows => db.Set<OutgoingEmail>();

    public async Task AddAsync(OutgoingEmail email, CancellationToken ct)
    {
        Rows.Add(email);
        await db.SaveChangesAsync(ct);
        db.Entry(email).State = EntityState.Detached;
    }

    /// <summary>Due rows, oldest due first.</summary>
    public Task<List<OutgoingEmail>> DueAsync(DateTime now, int max, CancellationToken ct) =>
        Rows.AsNoTracking().Where(e => e.SendAt <= now).OrderBy(e => e.SendAt).Take(max).ToListAsync(ct);

    /// <summary>When the next row not yet due is due (a retry, or another sender's lease ending); null when there is none.</summary>
    public async Task<DateTime?> NextDueAfterAsync(DateTime now, CancellationToken ct) =>
        await Rows.Where(e => e.SendAt > now).OrderBy(e => e.SendAt).Select(e => (DateTime?)e.SendAt).FirstOrDefaultAsync(ct);

    /// <summary>Takes <paramref name="email"/> (as read by <see cref="DueAsync"/>) for its next attempt, until <paramref name="leaseEnd"/>; false when another sender took it since.</summary>
    public async Task<bool> TakeAsync(OutgoingEmail email, DateTime now, DateTime leaseEnd, CancellationToken ct) =>
        await Rows.Where(e => e.Id == email.Id && e.Attempts == email.Attempts && e.SendAt <= now)
            .ExecuteUpdateAsync(e => e.SetProperty(x => x.Attempts, email.Attempts + 1).SetProperty(x => x.SendAt, leaseEnd), ct) == 1;

    /// <summary>Gives back attempt <paramref name="attempt"/> unfinished (the server is stopping): due at once, the attempt not counted.</summary>
    public Task<int> ReleaseAsync(OutgoingEmail email, int attempt, DateTime now, CancellationToken ct) =>
        Rows.Where(e => e.Id == email.Id && e.Attempts == attempt)
            .ExecuteUpdateAsync(e => e.SetProperty(x => x.SendAt, now).SetProperty(x => x.Attempts, attempt - 1), ct);

    /// <summary>After attempt <paramref name="attempt"/>: deleted (<paramref name="retryAt"/> null: delivered or given up on) or due then.</summary>
    public Task<int> SettleAsync(OutgoingEmail email, int attempt, DateTime? retryAt, CancellationToken ct)
    {
        var taken = Rows.Where(e => e.Id == email.Id && e.Attempts == attempt);
        return retryAt is { } at ? taken.ExecuteUpdateAsync(e => e.SetProperty(x => x.SendAt, at), ct) : taken.ExecuteDeleteAsync(ct);
    }
}
