using System.Data.Common;
using Microsoft.Data.Sqlite;

namespace IdentityServer.Data;

/// <summary>
/// Whether a write failed because a row it refers to is gone: a client, user or authorization deleted while a request
/// that had already loaded it was still writing its token entry. That is a race the request lost, not a fault of the
/// database, so it must not be answered as an outage.
/// </summary>
public static class ForeignKeyViolation
{
    private const int SqliteForeignKeyConstraint = 787; // SQLITE_CONSTRAINT_FOREIGNKEY
    private const string PostgreSqlForeignKeyViolation = "23503";
    private const int SqlServerConstraintConflict = 547;

    public static bool IsIn(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case SqliteException { SqliteExtendedErrorCode: SqliteForeignKeyConstraint }:
                case DbException { SqlState: PostgreSqlForeignKeyViolation }:
                    return true;
                // Matched by name and read by reflection so that SQL Server's client library is loaded only where it is used.
                case DbException when e.GetType().FullName == "Microsoft.Data.SqlClient.SqlException"
                    && e.GetType().GetProperty("Number")?.GetValue(e) is SqlServerConstraintConflict:
                    return true;
            }
        }

        return false;
    }
}
