using System.Data.Common;
using System.Runtime.CompilerServices;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace IdentityServer.Performance;

/// <summary>
/// SQLite allows one writer at a time, and Microsoft.Data.Sqlite answers a busy database by sleeping 150 ms before
/// retrying. So that no request ever sleeps on that lock, every write this process makes (SaveChanges, a transaction,
/// a bulk UPDATE or DELETE) first takes this in-process gate, and writers queue here, without sleeping, instead of
/// colliding in SQLite. Readers are not gated (write-ahead logging lets them read while one writer writes).
/// Registered for SQLite only.
/// </summary>
public sealed class SqliteWriteGate : ISaveChangesInterceptor, IDbTransactionInterceptor, IDbCommandInterceptor, IDbConnectionInterceptor, IDbContextDisposalObserver
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConditionalWeakTable<DbContext, Holder> _holders = [];

    private enum Owner { None, SaveChanges, Transaction, Command }

    // SaveChanges (EF's own transaction inside it, if any, is covered).
    public InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        Enter(eventData.Context, Owner.SaveChanges);
        return result;
    }

    public async ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        await EnterAsync(eventData.Context, Owner.SaveChanges, cancellationToken);
        return result;
    }

    public int SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        Exit(eventData.Context, Owner.SaveChanges);
        return result;
    }

    public ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.SaveChanges);
        return ValueTask.FromResult(result);
    }

    public void SaveChangesFailed(DbContextErrorEventData eventData) => Exit(eventData.Context, Owner.SaveChanges);

    public Task SaveChangesFailedAsync(DbContextErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.SaveChanges);
        return Task.CompletedTask;
    }

    public void SaveChangesCanceled(DbContextEventData eventData) => Exit(eventData.Context, Owner.SaveChanges);

    public Task SaveChangesCanceledAsync(DbContextEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.SaveChanges);
        return Task.CompletedTask;
    }

    // Explicit transactions (BEGIN IMMEDIATE on SQLite: they take the write lock at once) hold the gate until they end.
    public InterceptionResult<DbTransaction> TransactionStarting(DbConnection connection, TransactionStartingEventData eventData, InterceptionResult<DbTransaction> result)
    {
        Enter(eventData.Context, Owner.Transaction);
        return result;
    }

    public async ValueTask<InterceptionResult<DbTransaction>> TransactionStartingAsync(DbConnection connection, TransactionStartingEventData eventData,
        InterceptionResult<DbTransaction> result, CancellationToken cancellationToken = default)
    {
        await EnterAsync(eventData.Context, Owner.Transaction, cancellationToken);
        return result;
    }

    public void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData) => Exit(eventData.Context, Owner.Transaction);

    public Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.Transaction);
        return Task.CompletedTask;
    }

    public void TransactionRolledBack(DbTransaction transaction, TransactionEndEventData eventData) => Exit(eventData.Context, Owner.Transaction);

    public Task TransactionRolledBackAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.Transaction);
        return Task.CompletedTask;
    }

    public void TransactionFailed(DbTransaction transaction, TransactionErrorEventData eventData) => Exit(eventData.Context, Owner.Transaction);

    public Task TransactionFailedAsync(DbTransaction transaction, TransactionErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.Transaction);
        return Task.CompletedTask;
    }

    // A write statement outside SaveChanges and transactions (ExecuteUpdate, ExecuteDelete, raw SQL).
    public InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
    {
        if (IsUngatedWrite(eventData.Context, command))
        {
            Enter(eventData.Context, Owner.Command);
        }

        return result;
    }

    public async ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        if (IsUngatedWrite(eventData.Context, command))
        {
            await EnterAsync(eventData.Context, Owner.Command, cancellationToken);
        }

        return result;
    }

    public int NonQueryExecuted(DbCommand command, CommandExecutedEventData eventData, int result)
    {
        Exit(eventData.Context, Owner.Command);
        return result;
    }

    public ValueTask<int> NonQueryExecutedAsync(DbCommand command, CommandExecutedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.Command);
        return ValueTask.FromResult(result);
    }

    public void CommandFailed(DbCommand command, CommandErrorEventData eventData) => Exit(eventData.Context, Owner.Command);

    public Task CommandFailedAsync(DbCommand command, CommandErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.Command);
        return Task.CompletedTask;
    }

    public void CommandCanceled(DbCommand command, CommandEndEventData eventData) => Exit(eventData.Context, Owner.Command);

    public Task CommandCanceledAsync(DbCommand command, CommandEndEventData eventData, CancellationToken cancellationToken = default)
    {
        Exit(eventData.Context, Owner.Command);
        return Task.CompletedTask;
    }

    // Whatever happened, a closed connection holds no SQLite lock: never keep the gate past it.
    public void ConnectionClosed(DbConnection connection, ConnectionEndEventData eventData) => Exit(eventData.Context, owner: null);

    public Task ConnectionClosedAsync(DbConnection connection, ConnectionEndEventData eventData)
    {
        Exit(eventData.Context, owner: null);
        return Task.CompletedTask;
    }

    // A transaction disposed without commit or rollback does not always close the connection, and a pooled context
    // is reset without interceptor events: the context's end releases whatever it still holds, after rolling back a
    // transaction still open (so the next writer does not meet SQLite's lock). A context that holds nothing (an idle
    // pooled one included) is not touched.
    public void ContextDisposing(DbContext context)
    {
        if (Holds(context))
        {
            context.Database.CurrentTransaction?.Rollback();
            Exit(context, owner: null);
        }
    }

    public async ValueTask ContextDisposingAsync(DbContext context)
    {
        if (Holds(context))
        {
            if (context.Database.CurrentTransaction is { } transaction)
            {
                await transaction.RollbackAsync();
            }

            Exit(context, owner: null);
        }
    }

    private bool Holds(DbContext context) => _holders.TryGetValue(context, out var holder) && holder.Owner != Owner.None;

    private static bool IsUngatedWrite(DbContext? context, DbCommand command) =>
        context?.Database.CurrentTransaction is null
        && !command.CommandText.TrimStart().StartsWith("SELECT", StringComparison.OrdinalIgnoreCase);

    private void Enter(DbContext? context, Owner owner)
    {
        if (context is null || _holders.GetOrCreateValue(context) is not { Owner: Owner.None } holder)
        {
            return;
        }

        _gate.Wait();
        holder.Owner = owner;
    }

    private async ValueTask EnterAsync(DbContext? context, Owner owner, CancellationToken cancellationToken)
    {
        if (context is null || _holders.GetOrCreateValue(context) is not { Owner: Owner.None } holder)
        {
            return;
        }

        await _gate.WaitAsync(cancellationToken);
        holder.Owner = owner;
    }

    /// <summary>Releases the gate if <paramref name="context"/> holds it for <paramref name="owner"/> (null: for anything).</summary>
    private void Exit(DbContext? context, Owner? owner)
    {
        if (context is null || !_holders.TryGetValue(context, out var holder) || holder.Owner == Owner.None || (owner is { } o && holder.Owner != o))
        {
            return;
        }

        holder.Owner = Owner.None;
        _gate.Release();
    }

    private sealed class Holder
    {
        public Owner Owner { get; set; }
    }
}
