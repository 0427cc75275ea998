using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Data;

/// <summary>
/// Named locks held until the current transaction ends, for a check and the write it allows (one remembered consent per
/// user and client, one last way to sign in per account, one active admin at least), which no unique index can express. PostgreSQL takes an
/// advisory lock, SQL Server an application lock; SQLite needs none: a transaction holds its one write lock from its
/// start (<c>BEGIN IMMEDIATE</c>, and this process's write gate).
/// </summary>
public static class TransactionLocks
{
    /// <summary>Seeds PostgreSQL's advisory lock keys of these names.</summary>
    private const long LockKeySeed = 727_002;

    /// <summary>Waits until no other transaction holds the lock named <paramref name="name"/>, then holds it until this one ends.</summary>
    public static async Task TakeAsync(ApplicationDbContext db, string name, CancellationToken ct)
    {
        if (db.Database.CurrentTransaction is null)
        {
            throw new InvalidOperationException("A transaction lock is taken inside a transaction only: begin one first.");
        }

        switch (DatabaseProviders.Of(db))
        {
            case DatabaseProvider.PostgreSql:
                await db.Database.ExecuteSqlRawAsync($"SELECT pg_advisory_xact_lock(hashtextextended({{0}}, {LockKeySeed}))", [name], ct);
                break;
            case DatabaseProvider.SqlServer:
                // sp_getapplock reports a lock it did not take (a deadlock victim, a timeout) by its return value, not
                // by an error: raise one, so the check and its write never go on without the lock.
                await db.Database.ExecuteSqlRawAsync(
                    """
                    DECLARE @taken int;
                    EXEC @taken = sp_getapplock @Resource = {0}, @LockMode = N'Exclusive', @LockOwner = N'Transaction';
                    IF @taken < 0 RAISERROR(N'The lock %s was not taken (sp_getapplock returned %d).', 16, 1, {0}, @taken);
                    """, [$"identityserver:{name}"], ct);
                break;
        }
    }
}
