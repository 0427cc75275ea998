using System.Data;
using System.Data.Common;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Npgsql;

namespace IdentityServer.Data;

/// <summary>
/// Npgsql auto-prepares a statement on its fifth use on a connection. When that use fails in the database (any error:
/// a foreign key, a deadlock, a NUL in a value), the connection's prepared statement is left broken
/// (npgsql/npgsql#6391), and the statement's next use on that connection fails with "Received unexpected backend
/// message": a 500 for whichever request gets that connection from the pool next. Unpreparing the connection's
/// statements right after the failure clears it; they are prepared again on later uses.
/// </summary>
public sealed class PreparedStatementRepair : DbCommandInterceptor
{
    public override void CommandFailed(DbCommand command, CommandErrorEventData eventData) => Repair(command, eventData.Exception);

    public override Task CommandFailedAsync(DbCommand command, CommandErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        Repair(command, eventData.Exception);
        return Task.CompletedTask;
    }

    /// <summary>After <paramref name="command"/> failed with <paramref name="exception"/>: on an error from PostgreSQL, the connection's statements unprepared.</summary>
    public static void Repair(DbCommand command, Exception exception)
    {
        if (exception is not PostgresException || command.Connection is not NpgsqlConnection { State: ConnectionState.Open } connection)
        {
            return;
        }

        try
        {
            connection.UnprepareAll();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // A connection that is busy or broken: Npgsql does not give a broken one back to the pool.
        }
    }
}
