using IdentityServer.Data;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// Races made on purpose: a second instance on the fixture's database that, when one of its requests is about to
/// save a given change, runs a step first (typically: start a competing request on the first instance, and wait until
/// it is done or waits for a lock the saving request holds).
/// </summary>
public static class SteppingInstance
{
    /// <summary>
    /// A second instance that runs <paramref name="step"/> once, when a SaveChanges is about to write a
    /// <typeparamref name="TEntity"/> that <paramref name="matches"/> (OpenIddict's stores save each change so).
    /// </summary>
    public static WebApplicationFactory<Program> InstanceThatStepsInBeforeSaving<TEntity>(this ServerFixture server,
        Func<EntityEntry<TEntity>, bool> matches, Func<Task> step) where TEntity : class
    {
        var interceptor = new StepBeforeSaving<TEntity>(matches, step);
        return server.Factory.WithWebHostBuilder(builder => builder.ConfigureServices(services => AddInterceptor(services, server.Provider, interceptor)));
    }

    /// <summary>
    /// As <see cref="InstanceThatStepsInBeforeSaving{TEntity}"/>, started as a server of the fixture's own kind, which an
    /// <see cref="AttachedServer"/> drives with a browser (its pages, signed in).
    /// </summary>
    public static TestServerFactory ServerThatStepsInBeforeSaving<TEntity>(this ServerFixture server, Func<EntityEntry<TEntity>, bool> matches,
        Func<Task> step) where TEntity : class
    {
        var interceptor = new StepBeforeSaving<TEntity>(matches, step);
        return server.StartServer(testServices: services => AddInterceptor(services, server.Provider, interceptor));
    }

    private static void AddInterceptor(IServiceCollection services, DatabaseProvider provider, IInterceptor interceptor)
    {
        switch (provider)
        {
            case DatabaseProvider.PostgreSql:
                services.ConfigureDbContext<PostgreSqlApplicationDbContext>(options => options.AddInterceptors(interceptor));
                break;
            case DatabaseProvider.Sqlite:
                services.ConfigureDbContext<SqliteApplicationDbContext>(options => options.AddInterceptors(interceptor));
                break;
            default:
                throw new NotSupportedException($"No test fixture runs {provider}.");
        }
    }

    /// <summary>
    /// Until <paramref name="request"/> is done, or on PostgreSQL one of its statements (its text containing
    /// <paramref name="statement"/>) waits for a lock. On SQLite at once: it runs one writing transaction at a time, and
    /// a transaction holds the database's write lock from its start, so whatever the request writes waits for the
    /// stepping request's transaction, if it has one, anyway.
    /// </summary>
    public static async Task UntilDoneOrWaitingForALockAsync(this ServerFixture server, Task request, string statement)
    {
        if (server.Provider != DatabaseProvider.PostgreSql)
        {
            return;
        }

        await using var session = await PostgreSqlSession.OpenAsync(server);
        await Eventually.TrueAsync(async () => request.IsCompleted || await session.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, @value) > 0",
                statement) > 0,
            TimeSpan.FromSeconds(30), $"the racing request to finish or to wait for a lock ({statement})");
    }

    private sealed class StepBeforeSaving<TEntity>(Func<EntityEntry<TEntity>, bool> matches, Func<Task> step) : SaveChangesInterceptor
        where TEntity : class
    {
        private int _stepped;

        public override async ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result,
            CancellationToken cancellationToken = default)
        {
            if (eventData.Context!.ChangeTracker.Entries<TEntity>().Any(matches) && Interlocked.Exchange(ref _stepped, 1) == 0)
            {
                await step();
            }

            return result;
        }
    }
}
