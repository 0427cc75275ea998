using System.Data.Common;
using System.Globalization;
using IdentityServer.Hosting;
using Microsoft.Data.SqlClient;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Npgsql;

namespace IdentityServer.Data;

public static class DataExtensions
{
    /// <summary>
    /// Registers <see cref="ApplicationDbContext"/> on the configured provider, and the start-up initializer that
    /// migrates the database, creates keys and applies the seed before the server takes requests.
    /// </summary>
    public static WebApplicationBuilder AddData(this WebApplicationBuilder builder)
    {
        var provider = ReadProvider(builder.Configuration);
        var connectionString = builder.Configuration.GetConnectionString(DatabaseOptions.ConnectionStringName);

        builder.Services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.Section).ValidateOnStart();

        // Pooled: a request reuses a context whose options, internal services and model are already resolved
        // (measured: building them for every request was about a tenth of a token request's CPU).
        switch (provider)
        {
            case DatabaseProvider.Sqlite:
                connectionString = SqliteConnectionString(connectionString, builder.Environment.ContentRootPath);
                builder.Services.AddDbContextPool<ApplicationDbContext, SqliteApplicationDbContext>(options =>
                    options.UseSqlite(connectionString).ForServer().QuietReviewedSqliteRebuilds());
                break;
            case DatabaseProvider.SqlServer:
                // No retrying execution strategy: OpenIddict's stores open their own transactions, which a
                // retrying strategy refuses, and an outage must be answered within seconds, not after retries.
                connectionString = RequireConnectionString(connectionString, provider);
                Parse(() => new SqlConnectionStringBuilder(connectionString), provider);
                if (GlobalizationIsInvariant())
                {
                    throw new StartupConfigurationException("Database:Provider is SqlServer, whose client needs ICU and refuses .NET's invariant " +
                        "globalization mode: unset DOTNET_SYSTEM_GLOBALIZATION_INVARIANT (and install ICU, libicu, where it is missing).");
                }

                builder.Services.AddDbContextPool<ApplicationDbContext, SqlServerApplicationDbContext>(options =>
                    options.UseSqlServer(connectionString).ForServer());
                break;
            case DatabaseProvider.PostgreSql:
                builder.Services.AddDbContextPool<ApplicationDbContext, PostgreSqlApplicationDbContext>(options =>
                    options.UseNpgsql(PostgreSqlConnectionString(RequireConnectionString(connectionString, provider))).ForServer()
                        .AddInterceptors(new PreparedStatementRepair()));
                break;
        }

        // The token endpoint's writes (redeeming the grant, storing the new tokens) commit together, before the answer.
        builder.Services.AddOpenIddict().AddServer(server => server.UseTokenTransactions());

        // First of all hosted services: Data Protection's own start-up reads its keys from the database,
        // so the schema must exist before it runs.
        builder.Services.Insert(0, ServiceDescriptor.Singleton<IHostedService, DatabaseInitializer>());
        return builder;
    }

    /// <summary>What every provider's context gets: OpenIddict's entities, quiet connection errors, caches told of commits.</summary>
    private static DbContextOptionsBuilder ForServer(this DbContextOptionsBuilder options) =>
        options.UseOpenIddict().QuietConnectionErrors().AddInterceptors(AfterCommit.Interceptor);

    /// <summary>
    /// A database that cannot be reached is reported once, by whoever handles it (the start-up line, the error
    /// handler's log entry, the readiness check), not also by EF Core's own error log with a stack trace.
    /// </summary>
    private static DbContextOptionsBuilder QuietConnectionErrors(this DbContextOptionsBuilder options) =>
        options.ConfigureWarnings(warnings => warnings.Log(
            (RelationalEventId.ConnectionError, LogLevel.Debug),
            (CoreEventId.QueryIterationFailed, LogLevel.Debug),
            (CoreEventId.SaveChangesFailed, LogLevel.Debug),
            (RelationalEventId.CommandError, LogLevel.Debug)));

    /// <summary>
    /// The shipped SQLite migrations rebuild one table (UserSessionClients, in DurableLogoutTokens, to drop a foreign
    /// key) after filling its new columns from another table. The order is what the upgrade test checks, but EF Core warns
    /// about it, and about the rebuild's PRAGMA outside the transaction, at every first start, in words that alarm. The
    /// migration tests fail if any other migration draws these warnings, so a new one is still reviewed.
    /// </summary>
    private static DbContextOptionsBuilder QuietReviewedSqliteRebuilds(this DbContextOptionsBuilder options) =>
        options.ConfigureWarnings(warnings => warnings.Log(
            (SqliteEventId.TableRebuildPendingWarning, LogLevel.Debug),
            (RelationalEventId.NonTransactionalMigrationOperationWarning, LogLevel.Debug)));

    internal static DatabaseProvider ReadProvider(IConfiguration configuration)
    {
        var value = configuration[$"{DatabaseOptions.Section}:{nameof(DatabaseOptions.Provider)}"];
        if (string.IsNullOrWhiteSpace(value))
        {
            return DatabaseProvider.Sqlite;
        }

        if (Enum.TryParse<DatabaseProvider>(value, ignoreCase: true, out var provider) && Enum.IsDefined(provider))
        {
            return provider;
        }

        throw new StartupConfigurationException(
            $"Database:Provider '{value}' is not supported; use one of: {string.Join(", ", Enum.GetNames<DatabaseProvider>())}.");
    }

    private static string RequireConnectionString(string? connectionString, DatabaseProvider provider) =>
        string.IsNullOrWhiteSpace(connectionString)
            ? throw new StartupConfigurationException(
                $"Database:Provider is {provider} but ConnectionStrings:{DatabaseOptions.ConnectionStringName} is not set.")
            : connectionString;

    /// <summary>
    /// Whether .NET runs without culture data (DOTNET_SYSTEM_GLOBALIZATION_INVARIANT): then no culture but the invariant
    /// one exists, or (with predefined cultures not required) each behaves as the invariant one.
    /// </summary>
    private static bool GlobalizationIsInvariant()
    {
        try
        {
            return CultureInfo.GetCultureInfo("en-US").EnglishName.Contains("Invariant", StringComparison.Ordinal);
        }
        catch (CultureNotFoundException)
        {
            return true;
        }
    }

    /// <summary>
    /// A connection string its provider cannot parse (a misspelt keyword, another provider's keywords, a port that is
    /// no number) stops the start with one line; the provider would otherwise throw with a stack trace, at start or at
    /// the first query. The providers' messages name the keyword, never its value (which may be a password).
    /// </summary>
    private static T Parse<T>(Func<T> parse, DatabaseProvider provider)
    {
        try
        {
            return parse();
        }
        catch (Exception e) when (e is ArgumentException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            throw new StartupConfigurationException(
                $"ConnectionStrings:{DatabaseOptions.ConnectionStringName} is not a valid {provider} connection string: {e.Message}", e);
        }
    }

    /// <summary>
    /// Unless the connection string says otherwise:
    /// <list type="bullet">
    /// <item>Npgsql prepares a statement on the server once a connection has run it five times (auto-prepare), so the
    /// lookups every token request makes skip PostgreSQL's parsing and planning;</item>
    /// <item>a connection goes back to the pool without a reset. Npgsql's reset is seven statements (RESET ALL, CLOSE
    /// ALL, pg_advisory_unlock_all() and the rest) run on the connection's next use, and EF Core takes a connection
    /// from the pool for each query: about a tenth of PostgreSQL's CPU per refresh (measured, README). Nothing here
    /// leaves session state behind: the token lookups' planner settings are local to their transaction, and the
    /// migration lock has a connection of its own outside the pool (<see cref="MigrationLock"/>).</item>
    /// </list>
    /// </summary>
    private static string PostgreSqlConnectionString(string configured)
    {
        var keywords = Parse(() => new DbConnectionStringBuilder { ConnectionString = configured }, DatabaseProvider.PostgreSql);
        // Npgsql takes each keyword with or without its spaces.
        bool Sets(string keyword) => keywords.ContainsKey(keyword) || keywords.ContainsKey(keyword.Replace(" ", "", StringComparison.Ordinal));
        var builder = Parse(() => new NpgsqlConnectionStringBuilder(configured), DatabaseProvider.PostgreSql);
        if (!Sets("Max Auto Prepare"))
        {
            builder.MaxAutoPrepare = 64;
        }

        if (!Sets("No Reset On Close"))
        {
            builder.NoResetOnClose = true;
        }

        return builder.ToString();
    }

    /// <summary>Without a connection string, the SQLite file lives in the app's data folder (App_Data).</summary>
    private static string SqliteConnectionString(string? configured, string contentRoot)
    {
        var builder = Parse(() => new SqliteConnectionStringBuilder(configured ?? string.Empty), DatabaseProvider.Sqlite);
        if (string.IsNullOrEmpty(builder.DataSource))
        {
            var dataFolder = Path.Combine(contentRoot, "App_Data");
            Directory.CreateDirectory(dataFolder);
            builder.DataSource = Path.Combine(dataFolder, "identityserver.db");
        }

        return builder.ToString();
    }
}
