using IdentityServer.Clients;
using IdentityServer.Hosting;
using IdentityServer.Keys;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace IdentityServer.Data;

/// <summary>
/// Runs before the server takes requests: applies migrations, loads (or creates) the keys, applies the seed.
/// A hosted service rather than code in Program so that test hosts run it too.
/// </summary>
public sealed class DatabaseInitializer(IServiceScopeFactory scopes, KeyRing keys, IOptions<DatabaseOptions> options, ILogger<DatabaseInitializer> logger)
    : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        try
        {
            await PrepareAsync(db, cancellationToken);
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            throw new StartupConfigurationException(
                $"cannot reach the {options.Value.Provider} database (ConnectionStrings:{DatabaseOptions.ConnectionStringName}): {e.GetBaseException().Message}", e);
        }

        await SeedAsync(cancellationToken);
    }

    private async Task PrepareAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        if (options.Value.MigrateOnStartup)
        {
            for (var attempt = 1; ; attempt++)
            {
                var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
                if (pending.Count == 0)
                {
                    break;
                }

                logger.LogInformation(DataEvents.Migrating, "Applying {Count} migration(s): {Migrations}", pending.Count, pending);
                try
                {
                    await db.Database.MigrateAsync(cancellationToken);
                    break;
                }
                catch (System.Data.Common.DbException) when (attempt < 3)
                {
                    // Instances starting together: the provider's migration lock may cover only one migration's
                    // transaction, so another instance can apply the next one meanwhile. Ours rolled back: look again.
                    logger.LogInformation(DataEvents.MigrationRetried, "Another instance migrated at the same time; checking again");
                }
            }

            if (db.Database.IsSqlite())
            {
                // Write-ahead logging lets readers go on while a token is written; the setting persists in the file.
                await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", cancellationToken);
            }
        }

        await keys.LoadAsync(db, cancellationToken);
    }

    private static bool IsConnectionFailure(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is System.Data.Common.DbException or System.Net.Sockets.SocketException or TimeoutException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Instances starting together on one database may seed the same entry at the same moment; the loser's
    /// insert violates a unique index. Seeding is idempotent, so it simply runs again, then finds and updates.
    /// </summary>
    private async Task SeedAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            await using var scope = scopes.CreateAsyncScope();
            try
            {
                await scope.ServiceProvider.GetRequiredService<Seeder>().SeedAsync(cancellationToken);
                return;
            }
            catch (Exception e) when (attempt < 3 && e is DbUpdateException or OpenIddict.Abstractions.OpenIddictExceptions.ConcurrencyException)
            {
                logger.LogInformation(DataEvents.SeedRetried, "Another instance seeded at the same time; seeding again");
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

public static class DataEvents
{
    public static readonly EventId Migrating = new(1001, nameof(Migrating));
    public static readonly EventId SeedRetried = new(1002, nameof(SeedRetried));
    public static readonly EventId MigrationRetried = new(1003, nameof(MigrationRetried));
}
