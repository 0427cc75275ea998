using IdentityServer.Clients;
using IdentityServer.Hosting;
using IdentityServer.Keys;
using IdentityServer.Shared;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace IdentityServer.Data;

/// <summary>
/// Runs before the server takes requests: applies migrations, loads (or creates) the keys, applies the seed.
/// A hosted service rather than code in Program so that test hosts run it too.
/// </summary>
public sealed class DatabaseInitializer(
    IServiceScopeFactory scopes,
    KeyRingProtection keyRingProtection,
    KeyRing keys,
    IOptions<DatabaseOptions> options,
    ILogger<DatabaseInitializer> logger)
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
            // EF Core's own lock on PostgreSQL lasts one migration's transaction: two instances starting together could
            // both apply the second of several migrations.
            await using (await MigrationLock.TakeAsync(db, options.Value.Provider, cancellationToken))
            {
                var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
                if (pending.Count > 0)
                {
                    logger.LogInformation(DataEvents.Migrating, "Applying {Count} migration(s): {Migrations}", pending.Count, pending);
                    await MigrateAsync(db, cancellationToken);
                }
            }

            if (options.Value.Provider == DatabaseProvider.Sqlite)
            {
                // Write-ahead logging lets readers go on while a token is written; the setting persists in the file.
                await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", cancellationToken);
            }
        }
        else if ((await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList() is { Count: > 0 } pending)
        {
            // The DBA's script not (or not yet) applied: the server would otherwise start and fail at the first query that
            // meets a missing table or column, or stop on one here as if the database were unreachable.
            throw new StartupConfigurationException(
                $"the database lacks {pending.Count} migration(s) ({string.Join(", ", pending)}) and Database:MigrateOnStartup is false: " +
                "apply the idempotent migrations script (README, \"Production storage\") or set Database:MigrateOnStartup to true.");
        }

        await keyRingProtection.EnsureAsync(db, cancellationToken);
        await keys.LoadAsync(db, cancellationToken);
    }

    /// <summary>
    /// Instances starting together on one database may apply the same migration at once where nothing else serialises
    /// them (SQLite, SQL Server: the provider's migration lock does not span several migrations): the loser's step
    /// fails and is rolled back. It then looks again and applies whatever is still pending.
    /// </summary>
    private static async Task MigrateAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await db.Database.MigrateAsync(cancellationToken);
                return;
            }
            catch (System.Data.Common.DbException) when (attempt < 5)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), cancellationToken);
                if (!(await db.Database.GetPendingMigrationsAsync(cancellationToken)).Any())
                {
                    return;
                }
            }
        }
    }

    private static bool IsConnectionFailure(Exception exception) =>
        exception.AndItsCauses().Any(e => e is System.Data.Common.DbException or System.Net.Sockets.SocketException or TimeoutException);

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
                foreach (var builtIn in scope.ServiceProvider.GetServices<IBuiltInSeed>())
                {
                    await builtIn.EnsureAsync(cancellationToken);
                }

                await scope.ServiceProvider.GetRequiredService<Seeder>().SeedAsync(cancellationToken);
                return;
            }
            catch (Exception e) when (attempt < 5 && IsSeedConflict(e))
            {
                logger.LogInformation(DataEvents.SeedRetried, "Another instance seeded at the same time ({Reason}); seeding again", e.Message);
            }
        }
    }

    /// <summary>
    /// How a lost race shows: a unique index refusing the insert, OpenIddict's own uniqueness check (it looks before
    /// inserting, so it usually sees the other instance's row first), or Identity's duplicate-name result.
    /// </summary>
    private static bool IsSeedConflict(Exception e) =>
        e is DbUpdateException or SeedConflictException
            or OpenIddict.Abstractions.OpenIddictExceptions.ConcurrencyException
            or OpenIddict.Abstractions.OpenIddictExceptions.ValidationException;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

public static class DataEvents
{
    public static readonly EventId Migrating = new(1001, nameof(Migrating));
    public static readonly EventId SeedRetried = new(1002, nameof(SeedRetried));
    public static readonly EventId MigrationRetried = new(1003, nameof(MigrationRetried));
    public static readonly EventId DeadlockRetried = new(1004, nameof(DeadlockRetried));
}
