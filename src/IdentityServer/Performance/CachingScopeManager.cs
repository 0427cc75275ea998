using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Core;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// OpenIddict's scope manager with scopes found by name or id kept in a process-wide cache
/// (<see cref="PerformanceOptions.EntityCacheLifetime"/>): every token request validates its scopes and reads their
/// resources (the audiences). Copies are handed out; an update or delete through this instance drops the entry at once.
/// </summary>
public sealed class CachingScopeManager(
    IOpenIddictScopeCache<OpenIddictEntityFrameworkCoreScope> cache,
    ILogger<OpenIddictScopeManager<OpenIddictEntityFrameworkCoreScope>> logger,
    IOptionsMonitor<OpenIddictCoreOptions> options,
    IOpenIddictScopeStore<OpenIddictEntityFrameworkCoreScope> store,
    ApplicationDbContext db,
    SnapshotCache<OpenIddictEntityFrameworkCoreScope> snapshots)
    : OpenIddictScopeManager<OpenIddictEntityFrameworkCoreScope>(cache, logger, options, store)
{
    public override async ValueTask<OpenIddictEntityFrameworkCoreScope?> FindByNameAsync(string name, CancellationToken cancellationToken = default)
    {
        if (snapshots.TryGet("name:" + name, out var snapshot))
        {
            return Track(snapshot);
        }

        var scope = await base.FindByNameAsync(name, cancellationToken);
        if (scope is not null)
        {
            snapshots.Set("name:" + name, Copy(scope));
        }

        return scope;
    }

    public override async ValueTask<OpenIddictEntityFrameworkCoreScope?> FindByIdAsync(string identifier, CancellationToken cancellationToken = default)
    {
        if (snapshots.TryGet("id:" + identifier, out var snapshot))
        {
            return Track(snapshot);
        }

        var scope = await base.FindByIdAsync(identifier, cancellationToken);
        if (scope is not null)
        {
            snapshots.Set("id:" + identifier, Copy(scope));
        }

        return scope;
    }

    public override IAsyncEnumerable<OpenIddictEntityFrameworkCoreScope> FindByNamesAsync(ImmutableArray<string> names, CancellationToken cancellationToken = default) =>
        snapshots.Enabled ? FindEachAsync(names, cancellationToken) : base.FindByNamesAsync(names, cancellationToken);

    public override IAsyncEnumerable<string> ListResourcesAsync(ImmutableArray<string> scopes, CancellationToken cancellationToken = default) =>
        snapshots.Enabled ? ListEachAsync(scopes, cancellationToken) : base.ListResourcesAsync(scopes, cancellationToken);

    public override async ValueTask UpdateAsync(OpenIddictEntityFrameworkCoreScope scope, CancellationToken cancellationToken = default)
    {
        Forget(scope);
        try
        {
            await base.UpdateAsync(scope, cancellationToken);
        }
        finally
        {
            Forget(scope);
        }
    }

    public override async ValueTask DeleteAsync(OpenIddictEntityFrameworkCoreScope scope, CancellationToken cancellationToken = default)
    {
        Forget(scope);
        try
        {
            await base.DeleteAsync(scope, cancellationToken);
        }
        finally
        {
            Forget(scope);
        }
    }

    private async IAsyncEnumerable<OpenIddictEntityFrameworkCoreScope> FindEachAsync(ImmutableArray<string> names, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        foreach (var name in names.Distinct(StringComparer.Ordinal))
        {
            if (await FindByNameAsync(name, cancellationToken) is { } scope)
            {
                yield return scope;
            }
        }
    }

    private async IAsyncEnumerable<string> ListEachAsync(ImmutableArray<string> scopes, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var scope in FindEachAsync(scopes, cancellationToken))
        {
            foreach (var resource in await GetResourcesAsync(scope, cancellationToken))
            {
                if (seen.Add(resource))
                {
                    yield return resource;
                }
            }
        }
    }

    private void Forget(OpenIddictEntityFrameworkCoreScope scope) =>
        snapshots.RemoveWhere(cached => cached.Id == scope.Id || cached.Name == scope.Name);

    /// <summary>
    /// The request's own instance of a cached entity: the one its database context already tracks, or a copy attached
    /// to it as unchanged, so that a later query, update or delete in the same request sees one instance, as without the cache.
    /// </summary>
    private OpenIddictEntityFrameworkCoreScope Track(OpenIddictEntityFrameworkCoreScope snapshot)
    {
        var set = db.Set<OpenIddictEntityFrameworkCoreScope>();
        if (set.Local.FirstOrDefault(e => e.Id == snapshot.Id) is { } tracked)
        {
            return tracked;
        }

        var copy = Copy(snapshot);
        set.Attach(copy);
        return copy;
    }

    private static OpenIddictEntityFrameworkCoreScope Copy(OpenIddictEntityFrameworkCoreScope source) => new()
    {
        Id = source.Id,
        ConcurrencyToken = source.ConcurrencyToken,
        Description = source.Description,
        Descriptions = source.Descriptions,
        DisplayName = source.DisplayName,
        DisplayNames = source.DisplayNames,
        Name = source.Name,
        Properties = source.Properties,
        Resources = source.Resources,
    };
}
