using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace IdentityServer.Data;

/// <summary>
/// PostgreSQL's session advisory lock around a whole migration run, so that instances starting together apply
/// migrations one after the other. It is held on a connection of its own, outside the pool: pooled connections go
/// back without a reset (<c>No Reset On Close</c>), and a lock left on one by a failed unlock would stay held for as
/// long as that connection lives. Closing this connection always releases the lock. Other providers take no lock.
/// </summary>
public sealed class MigrationLock : IAsyncDisposable
{
    /// <summary>An arbitrary application-wide key for the advisory lock.</summary>
    private const long Key = 7_402_118_337;

    private readonly NpgsqlConnection? _connection;

    private MigrationLock(NpgsqlConnection? connection) => _connection = connection;

    public static async Task<MigrationLock> TakeAsync(DbContext db, DatabaseProvider provider, CancellationToken cancellationToken)
    {
        if (provider != DatabaseProvider.PostgreSql)
        {
            return new MigrationLock(null);
        }

        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(db.Database.GetConnectionString()) { Pooling = false }.ToString());
        try
        {
            await connection.OpenAsync(cancellationToken);
            await using var command = new NpgsqlCommand($"SELECT pg_advisory_lock({Key})", connection);
            await command.ExecuteNonQueryAsync(cancellationToken);
            return new MigrationLock(connection);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>Releases the lock by closing its connection (PostgreSQL releases a session's locks when it ends).</summary>
    public ValueTask DisposeAsync() => _connection?.DisposeAsync() ?? ValueTask.CompletedTask;
}
