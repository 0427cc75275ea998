using System.Data.Common;
using IdentityServer.Shared;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Data;

/// <summary>Tells the database failures that are races a request lost from real faults, on every provider.</summary>
public static class DatabaseErrors
{
    private const int SqliteForeignKeyConstraint = 787; // SQLITE_CONSTRAINT_FOREIGNKEY
    private const int SqlitePrimaryKeyConstraint = 1555; // SQLITE_CONSTRAINT_PRIMARYKEY
    private const int SqliteUniqueConstraint = 2067; // SQLITE_CONSTRAINT_UNIQUE
    private const string PostgreSqlForeignKeyViolation = "23503";
    private const int SqlServerConstraintConflict = 547;
    private const int SqlServerDeadlockVictim = 1205;

    /// <summary>A unique-index violation: someone created the same entry at the same moment.</summary>
    public static bool IsUniqueViolation(DbUpdateException exception) => exception.GetBaseException() switch
    {
        Npgsql.PostgresException postgres => postgres.SqlState == Npgsql.PostgresErrorCodes.UniqueViolation,
        // Not any SQLITE_CONSTRAINT: a foreign key or NOT NULL violation is no duplicate.
        SqliteException sqlite => sqlite.SqliteExtendedErrorCode is SqlitePrimaryKeyConstraint or SqliteUniqueConstraint,
        Microsoft.Data.SqlClient.SqlException sqlServer => sqlServer.Number is 2601 or 2627,
        _ => false,
    };

    /// <summary>
    /// Text the database cannot hold: a NUL character (say, in a client_id a request sent), which PostgreSQL refuses
    /// and SQLite and SQL Server store (and simply find nothing), or text longer than its column, which PostgreSQL and
    /// SQL Server refuse and SQLite stores. The request's fault, not the database's: the fields a request can set are
    /// checked before they are written, and this keeps any that is not from answering "database unavailable".
    /// </summary>
    public static bool IsUnstorableText(Exception? exception) => exception.AndItsCauses().Any(e =>
        // character_not_in_repertoire, untranslatable_character, string_data_right_truncation
        e is DbException { SqlState: "22021" or "22P05" or "22001" }
        // String or binary data would be truncated
        || SqlServerErrorNumber(e) is 2628 or 8152);

    /// <summary>
    /// Whether a name a request sent (a client_id, a scope) can be looked up at all: no stored name holds a NUL, and
    /// PostgreSQL refuses one with an error, which anyone could set off at will (and which, on the use Npgsql prepares
    /// the lookup on, used to break the connection for the next request: see <see cref="PreparedStatementRepair"/>).
    /// Such names are not found, without a query.
    /// </summary>
    public static bool CanBeStoredName(string name) => !name.Contains('\0');

    /// <summary>
    /// A write that refers to a row that is gone: a client, user or authorization deleted while a request that had
    /// already loaded it was still writing its token entry. That is a race the request lost, not a database outage.
    /// </summary>
    public static bool IsForeignKeyViolation(Exception? exception) => exception.AndItsCauses().Any(e => e switch
    {
        SqliteException { SqliteExtendedErrorCode: SqliteForeignKeyConstraint } => true,
        DbException { SqlState: PostgreSqlForeignKeyViolation } => true,
        _ => SqlServerErrorNumber(e) == SqlServerConstraintConflict,
    });

    /// <summary>
    /// The database broke a lock cycle by aborting this transaction (two writers that took the same rows in opposite
    /// orders, say an admin revoking a user's tokens while a batch of token writes updates some of them). Nothing of
    /// the transaction was kept, and running it again from the start normally succeeds.
    /// </summary>
    public static bool IsDeadlock(Exception? exception) => exception.AndItsCauses().Any(e =>
        // deadlock_detected, serialization_failure
        e is DbException { SqlState: "40P01" or "40001" } || SqlServerErrorNumber(e) == SqlServerDeadlockVictim);

    /// <summary>
    /// SQL Server's error number, matched by type name and read by reflection so that SQL Server's client library is
    /// loaded only where it is used.
    /// </summary>
    private static int? SqlServerErrorNumber(Exception e) =>
        e is DbException && e.GetType().FullName == "Microsoft.Data.SqlClient.SqlException"
            ? e.GetType().GetProperty("Number")?.GetValue(e) as int?
            : null;
}
