using Npgsql;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// A connection of the test's own to a server's PostgreSQL database: to hold row locks the way a concurrent writer
/// would, and to watch what waits for them.
/// </summary>
public sealed class PostgreSqlSession(NpgsqlConnection connection) : IAsyncDisposable
{
    private NpgsqlTransaction? _transaction;

    /// <summary>The PostgreSQL process serving this session.</summary>
    public int ProcessId => connection.ProcessID;

    /// <summary>For what the helpers below do not cover (reading several result sets, say).</summary>
    public NpgsqlConnection Connection => connection;

    public static async Task<PostgreSqlSession> OpenAsync(ServerFixture server)
    {
        var connection = new NpgsqlConnection(server.Settings["ConnectionStrings:IdentityServer"]);
        await connection.OpenAsync();
        return new PostgreSqlSession(connection);
    }

    /// <summary>
    /// Begins a transaction that waits <paramref name="deadlockTimeout"/> before it looks for a deadlock, longer than
    /// the server's connections do, so in a lock cycle with the server the server's side is aborted.
    /// </summary>
    public async Task BeginAsync(string deadlockTimeout = "5min")
    {
        _transaction = await connection.BeginTransactionAsync();
        await ExecuteAsync($"SET LOCAL deadlock_timeout = '{deadlockTimeout}'");
    }

    public Task CommitAsync() => _transaction!.CommitAsync();

    /// <summary>Runs <paramref name="sql"/> (in the transaction, if one was begun) with <paramref name="value"/> as @value.</summary>
    public async Task ExecuteAsync(string sql, object? value = null)
    {
        await using var command = Command(sql, value);
        await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql, object? value = null)
    {
        await using var command = Command(sql, value);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Until a statement of another connection waits for a lock that <paramref name="holder"/> holds.</summary>
    public Task WaitUntilBlockedByAsync(PostgreSqlSession holder, string what) =>
        Eventually.TrueAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE @value = ANY(pg_blocking_pids(pid))", holder.ProcessId) > 0,
            TimeSpan.FromSeconds(30), what);

    /// <summary>How many deadlocks PostgreSQL has broken in this database.</summary>
    public Task<long> DeadlocksAsync() => ScalarAsync<long>("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");

    /// <summary>Until PostgreSQL has counted a deadlock after the <paramref name="before"/> it had (its statistics lag a little).</summary>
    public Task WaitUntilDeadlockAfterAsync(long before) =>
        Eventually.TrueAsync(async () => await DeadlocksAsync() > before, TimeSpan.FromSeconds(30), "PostgreSQL counting the deadlock it broke");

    private NpgsqlCommand Command(string sql, object? value)
    {
        var command = new NpgsqlCommand(sql, connection);
        if (value is not null)
        {
            command.Parameters.AddWithValue("value", value);
        }

        return command;
    }

    public async ValueTask DisposeAsync() => await connection.DisposeAsync();
}
