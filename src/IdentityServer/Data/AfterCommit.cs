using System.Data.Common;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace IdentityServer.Data;

/// <summary>
/// Work to run once the transaction a context is in has committed. Caches use it to drop what a change made stale:
/// dropped only before the commit, a concurrent request could read the old, still committed row and cache it again
/// (an admin change runs in a transaction with its audit entry). Registered on every context as an interceptor.
/// </summary>
public sealed class AfterCommit : DbTransactionInterceptor
{
    public static readonly AfterCommit Interceptor = new();

    private readonly ConditionalWeakTable<DbContext, List<Action>> _pending = [];

    private AfterCommit()
    {
    }

    /// <summary>Runs <paramref name="action"/> when <paramref name="db"/>'s transaction commits, or now when it is in none.</summary>
    public static void Run(DbContext db, Action action)
    {
        if (db.Database.CurrentTransaction is null)
        {
            action();
            return;
        }

        var actions = Interceptor._pending.GetOrCreateValue(db);
        lock (actions)
        {
            actions.Add(action);
        }
    }

    public override DbTransaction TransactionStarted(DbConnection connection, TransactionEndEventData eventData, DbTransaction result)
    {
        Drop(eventData.Context); // left over from a transaction that ended without a commit event (disposed)
        return result;
    }

    public override ValueTask<DbTransaction> TransactionStartedAsync(DbConnection connection, TransactionEndEventData eventData, DbTransaction result,
        CancellationToken cancellationToken = default)
    {
        Drop(eventData.Context);
        return ValueTask.FromResult(result);
    }

    public override void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData) => RunPending(eventData.Context);

    public override Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        RunPending(eventData.Context);
        return Task.CompletedTask;
    }

    public override void TransactionRolledBack(DbTransaction transaction, TransactionEndEventData eventData) => Drop(eventData.Context);

    public override Task TransactionRolledBackAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        Drop(eventData.Context);
        return Task.CompletedTask;
    }

    private void RunPending(DbContext? db)
    {
        if (db is null || !_pending.TryGetValue(db, out var actions))
        {
            return;
        }

        _pending.Remove(db);
        List<Action> toRun;
        lock (actions)
        {
            toRun = [.. actions];
        }

        toRun.ForEach(action => action());
    }

    private void Drop(DbContext? db)
    {
        if (db is not null)
        {
            _pending.Remove(db);
        }
    }
}
