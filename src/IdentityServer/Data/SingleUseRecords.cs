using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Data;

/// <summary>A row that makes something usable once (its primary key), kept until it could no longer be accepted anyway.</summary>
public interface ISingleUseRecord
{
    /// <summary>UTC. The row is pruned after this, and its key may then be taken again.</summary>
    DateTime ExpiresAt { get; set; }
}

/// <summary>
/// The record of single-use things (client assertions, DPoP proofs): the first use inserts, a replay finds the key
/// taken. Insert or fail, never a read then a write: of concurrent requests with the same key, on any number of
/// instances, exactly one inserts.
/// </summary>
public sealed class SingleUseRecords(IServiceScopeFactory scopes, TimeProvider clock)
{
    /// <summary>
    /// Records <paramref name="record"/>; false if a live record has its key. <paramref name="sameKey"/> finds the row
    /// with the record's key.
    /// </summary>
    public async Task<bool> TryRecordAsync<TRecord>(TRecord record, Expression<Func<TRecord, bool>> sameKey, CancellationToken ct)
        where TRecord : class, ISingleUseRecord
    {
        // A context of its own: the request's may hold changes that are not this method's to save.
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        db.Add(record);
        try
        {
            await db.SaveChangesAsync(ct);
            return true;
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            // Taken. By a live record, that is a replay; by one long expired whose row awaits pruning, the key is free
            // again (what it stood for is refused as expired). Of racing requests only one moves an expired row on.
            var now = clock.GetUtcNow().UtcDateTime;
            var until = record.ExpiresAt;
            return await db.Set<TRecord>().Where(sameKey).Where(r => r.ExpiresAt <= now)
                .ExecuteUpdateAsync(r => r.SetProperty(x => x.ExpiresAt, until), ct) == 1;
        }
    }

    /// <summary>Deletes the records past their expiry (the token pruning job).</summary>
    public async Task<int> PruneAsync<TRecord>(CancellationToken ct) where TRecord : class, ISingleUseRecord
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var scope = scopes.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<TRecord>()
            .Where(r => r.ExpiresAt <= now).ExecuteDeleteAsync(ct);
    }
}
