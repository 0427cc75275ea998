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
    /// <summary>The scopes this request found (the manager is scoped: one per request).</summary>
    private readonly RequestLookups<OpenIddictEntityFrameworkCoreScope> _request =
        snapshots.NewRequest(s => s.Id, s => s.Name is { } name ? NameKey(name) : null);

    /// <remarks>
    /// Names with no stored scope are remembered too: the protocol scopes (openid, profile, offline_access...) are
    /// requested at every sign-in and looked up for their resources, and are not stored (measured: three queries and
    /// 6% of a sign-in's CPU).
    /// </remarks>
    public override ValueTask<OpenIddictEntityFrameworkCoreScope?> FindByNameAsync(string name, CancellationToken cancellationToken = default) =>
        snapshots.FindAsync(NameKey(name), db, _request, Copy, () => base.FindByNameAsync(name, cancellationToken), rememberMisses: true);

    /// <remarks>
    /// The remembered miss is dropped whatever the outcome: a creation refused because another instance created the
    /// scope first (two instances seeding at once) must find that scope when it looks again.
    /// </remarks>
    public override async ValueTask CreateAsync(OpenIddictEntityFrameworkCoreScope scope, CancellationToken cancellationToken = default)
    {
        try
        {
            await base.CreateAsync(scope, cancellationToken);
        }
        finally
        {
            if (scope.Name is not null)
            {
                snapshots.RemoveNowAndAfterCommit(db, NameKey(scope.Name));
            }
        }
    }

    public override ValueTask<OpenIddictEntityFrameworkCoreScope?> FindByIdAsync(string identifier, CancellationToken cancellationToken = default) =>
        snapshots.FindAsync(SnapshotCache<OpenIddictEntityFrameworkCoreScope>.IdKey(identifier), db, _request, Copy,
            () => base.FindByIdAsync(identifier, cancellationToken));

    public override IAsyncEnumerable<OpenIddictEntityFrameworkCoreScope> FindByNamesAsync(ImmutableArray<string> names, CancellationToken cancellationToken = default) =>
        snapshots.Enabled ? FindEachAsync(names, cancellationToken) : base.FindByNamesAsync(names, cancellationToken);

    public override IAsyncEnumerable<string> ListResourcesAsync(ImmutableArray<string> scopes, CancellationToken cancellationToken = default) =>
        snapshots.Enabled ? ListEachAsync(scopes, cancellationToken) : base.ListResourcesAsync(scopes, cancellationToken);

    public override async ValueTask UpdateAsync(OpenIddictEntityFrameworkCoreScope scope, CancellationToken cancellationToken = default)
    {
        _request.Forget(scope);
        await snapshots.ChangeAsync(db, scope, s => s.Id, SameAs(scope), () => base.UpdateAsync(scope, cancellationToken));
        if (scope.Name is not null)
        {
            snapshots.RemoveNowAndAfterCommit(db, NameKey(scope.Name));
        }
    }

    public override ValueTask DeleteAsync(OpenIddictEntityFrameworkCoreScope scope, CancellationToken cancellationToken = default)
    {
        _request.Forget(scope);
        return snapshots.ChangeAsync(db, scope, s => s.Id, SameAs(scope), () => base.DeleteAsync(scope, cancellationToken));
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

    private static string NameKey(string name) => "name:" + name;

    private static Func<OpenIddictEntityFrameworkCoreScope, bool> SameAs(OpenIddictEntityFrameworkCoreScope scope) =>
        cached => cached.Id == scope.Id || cached.Name == scope.Name;

    /// <summary>A copy: callers may change or update it without touching the cached snapshot.</summary>
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
