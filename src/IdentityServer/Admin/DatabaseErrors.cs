using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Admin;

/// <summary>Tells a unique-index violation (someone created the same entry at the same moment) from other failures.</summary>
internal static class DatabaseErrors
{
    public static bool IsUniqueViolation(DbUpdateException exception) => exception.GetBaseException() switch
    {
        Npgsql.PostgresException postgres => postgres.SqlState == Npgsql.PostgresErrorCodes.UniqueViolation,
        Microsoft.Data.Sqlite.SqliteException sqlite => sqlite.SqliteErrorCode == 19, // SQLITE_CONSTRAINT
        Microsoft.Data.SqlClient.SqlException sqlServer => sqlServer.Number is 2601 or 2627,
        _ => false,
    };
}
