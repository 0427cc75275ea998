using IdentityServer.Data;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>Empty databases for tests that start servers of their own (restarts, clocks they move, several instances).</summary>
public static class TestDatabases
{
    /// <summary>The connection string of a new, empty database: a SQLite file in a temporary folder, or a database in the test run's PostgreSQL cluster.</summary>
    public static async Task<string> CreateAsync(DatabaseProvider provider)
    {
        if (provider == DatabaseProvider.PostgreSql)
        {
            return await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync();
        }

        var folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "idsrv-tests", Guid.NewGuid().ToString("N")));
        return $"Data Source={Path.Combine(folder.FullName, "identity.db")}";
    }
}
