using IdentityServer.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

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

        switch (provider)
        {
            case DatabaseProvider.Sqlite:
                connectionString = SqliteConnectionString(connectionString, builder.Environment.ContentRootPath);
                builder.Services.AddDbContext<ApplicationDbContext, SqliteApplicationDbContext>(options =>
                    options.UseSqlite(connectionString).UseOpenIddict());
                break;
            case DatabaseProvider.SqlServer:
                builder.Services.AddDbContext<ApplicationDbContext, SqlServerApplicationDbContext>(options =>
                    options.UseSqlServer(RequireConnectionString(connectionString, provider),
                        sql => sql.EnableRetryOnFailure()).UseOpenIddict());
                break;
            case DatabaseProvider.PostgreSql:
                builder.Services.AddDbContext<ApplicationDbContext, PostgreSqlApplicationDbContext>(options =>
                    options.UseNpgsql(RequireConnectionString(connectionString, provider)).UseOpenIddict());
                break;
        }

        // First of all hosted services: Data Protection's own start-up reads its keys from the database,
        // so the schema must exist before it runs.
        builder.Services.Insert(0, ServiceDescriptor.Singleton<IHostedService, DatabaseInitializer>());
        return builder;
    }

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

    /// <summary>Without a connection string, the SQLite file lives in the app's data folder (App_Data).</summary>
    private static string SqliteConnectionString(string? configured, string contentRoot)
    {
        var builder = new SqliteConnectionStringBuilder(configured ?? string.Empty);
        if (string.IsNullOrEmpty(builder.DataSource))
        {
            var dataFolder = Path.Combine(contentRoot, "App_Data");
            Directory.CreateDirectory(dataFolder);
            builder.DataSource = Path.Combine(dataFolder, "identityserver.db");
        }

        return builder.ToString();
    }
}
