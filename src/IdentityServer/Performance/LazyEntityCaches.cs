using System.Collections.Immutable;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Core;

namespace IdentityServer.Performance;

// OpenIddict's per-request entity caches, each made the first time it is used. OpenIddict's managers take their cache
// in their constructors, so every request that touches a manager built all four, a MemoryCache and its dictionaries
// each (5% of the bytes a client credentials token allocated), though most requests use one or none: clients and scopes
// come from our process-wide caches. Made on first use, each is OpenIddict's own cache, with its behaviour; removing an
// entry from a cache not yet made has nothing to remove.

/// <summary>Holds one of OpenIddict's caches, made by <see cref="Create"/> the first time <see cref="Cache"/> is read.</summary>
public abstract class LazyEntityCache<TCache> : IDisposable where TCache : class, IDisposable
{
    private TCache? _cache;

    protected TCache Cache => _cache ??= Create();

    /// <summary>The cache if it was made, else null (nothing cached yet, so nothing to remove).</summary>
    protected TCache? Made => _cache;

    public void Dispose() => _cache?.Dispose();

    protected abstract TCache Create();
}

public sealed class LazyApplicationCache<TApplication>(IOptionsMonitor<OpenIddictCoreOptions> options, IOpenIddictApplicationStore<TApplication> store)
    : LazyEntityCache<OpenIddictApplicationCache<TApplication>>, IOpenIddictApplicationCache<TApplication> where TApplication : class
{
    protected override OpenIddictApplicationCache<TApplication> Create() => new(options, store);

    public ValueTask AddAsync(TApplication application, CancellationToken cancellationToken) => Cache.AddAsync(application, cancellationToken);

    public ValueTask<TApplication?> FindByClientIdAsync(string identifier, CancellationToken cancellationToken) => Cache.FindByClientIdAsync(identifier, cancellationToken);

    public ValueTask<TApplication?> FindByIdAsync(string identifier, CancellationToken cancellationToken) => Cache.FindByIdAsync(identifier, cancellationToken);

    public IAsyncEnumerable<TApplication> FindByPostLogoutRedirectUriAsync(string uri, CancellationToken cancellationToken) =>
        Cache.FindByPostLogoutRedirectUriAsync(uri, cancellationToken);

    public IAsyncEnumerable<TApplication> FindByRedirectUriAsync(string uri, CancellationToken cancellationToken) => Cache.FindByRedirectUriAsync(uri, cancellationToken);

    public ValueTask RemoveAsync(TApplication application, CancellationToken cancellationToken) =>
        Made?.RemoveAsync(application, cancellationToken) ?? ValueTask.CompletedTask;
}

public sealed class LazyAuthorizationCache<TAuthorization>(IOptionsMonitor<OpenIddictCoreOptions> options, IOpenIddictAuthorizationStore<TAuthorization> store)
    : LazyEntityCache<OpenIddictAuthorizationCache<TAuthorization>>, IOpenIddictAuthorizationCache<TAuthorization> where TAuthorization : class
{
    protected override OpenIddictAuthorizationCache<TAuthorization> Create() => new(options, store);

    public ValueTask AddAsync(TAuthorization authorization, CancellationToken cancellationToken) => Cache.AddAsync(authorization, cancellationToken);

    public IAsyncEnumerable<TAuthorization> FindAsync(string? subject, string? client, string? status, string? type, ImmutableArray<string>? scopes,
        CancellationToken cancellationToken) => Cache.FindAsync(subject, client, status, type, scopes, cancellationToken);

    public IAsyncEnumerable<TAuthorization> FindByApplicationIdAsync(string identifier, CancellationToken cancellationToken) =>
        Cache.FindByApplicationIdAsync(identifier, cancellationToken);

    public ValueTask<TAuthorization?> FindByIdAsync(string identifier, CancellationToken cancellationToken) => Cache.FindByIdAsync(identifier, cancellationToken);

    public IAsyncEnumerable<TAuthorization> FindBySubjectAsync(string subject, CancellationToken cancellationToken) => Cache.FindBySubjectAsync(subject, cancellationToken);

    public ValueTask RemoveAsync(TAuthorization authorization, CancellationToken cancellationToken) =>
        Made?.RemoveAsync(authorization, cancellationToken) ?? ValueTask.CompletedTask;
}

public sealed class LazyScopeCache<TScope>(IOptionsMonitor<OpenIddictCoreOptions> options, IOpenIddictScopeStore<TScope> store)
    : LazyEntityCache<OpenIddictScopeCache<TScope>>, IOpenIddictScopeCache<TScope> where TScope : class
{
    protected override OpenIddictScopeCache<TScope> Create() => new(options, store);

    public ValueTask AddAsync(TScope scope, CancellationToken cancellationToken) => Cache.AddAsync(scope, cancellationToken);

    public ValueTask<TScope?> FindByIdAsync(string identifier, CancellationToken cancellationToken) => Cache.FindByIdAsync(identifier, cancellationToken);

    public ValueTask<TScope?> FindByNameAsync(string name, CancellationToken cancellationToken) => Cache.FindByNameAsync(name, cancellationToken);

    public IAsyncEnumerable<TScope> FindByNamesAsync(ImmutableArray<string> names, CancellationToken cancellationToken) => Cache.FindByNamesAsync(names, cancellationToken);

    public IAsyncEnumerable<TScope> FindByResourceAsync(string resource, CancellationToken cancellationToken) => Cache.FindByResourceAsync(resource, cancellationToken);

    public ValueTask RemoveAsync(TScope scope, CancellationToken cancellationToken) => Made?.RemoveAsync(scope, cancellationToken) ?? ValueTask.CompletedTask;
}

/// <summary>
/// Lookups of one token entry (by id, by reference id) are not cached here but sent to the store, which keeps the
/// request's instances itself (<see cref="BatchingTokenStore"/>): the cache's bookkeeping for them (five removals and
/// three entries with their change tokens for every entry looked up or created) was about 4% of an introspection.
/// Searches that return several entries are cached as OpenIddict does.
/// </summary>
public sealed class LazyTokenCache<TToken>(IOptionsMonitor<OpenIddictCoreOptions> options, IOpenIddictTokenStore<TToken> store)
    : LazyEntityCache<OpenIddictTokenCache<TToken>>, IOpenIddictTokenCache<TToken> where TToken : class
{
    protected override OpenIddictTokenCache<TToken> Create() => new(options, store);

    /// <summary>Only a cache already made can hold searches the new entry changes.</summary>
    public ValueTask AddAsync(TToken token, CancellationToken cancellationToken) => Made?.AddAsync(token, cancellationToken) ?? ValueTask.CompletedTask;

    public IAsyncEnumerable<TToken> FindAsync(string? subject, string? client, string? status, string? type, CancellationToken cancellationToken) =>
        Cache.FindAsync(subject, client, status, type, cancellationToken);

    public IAsyncEnumerable<TToken> FindByApplicationIdAsync(string identifier, CancellationToken cancellationToken) =>
        Cache.FindByApplicationIdAsync(identifier, cancellationToken);

    public IAsyncEnumerable<TToken> FindByAuthorizationIdAsync(string identifier, CancellationToken cancellationToken) =>
        Cache.FindByAuthorizationIdAsync(identifier, cancellationToken);

    public ValueTask<TToken?> FindByIdAsync(string identifier, CancellationToken cancellationToken) => store.FindByIdAsync(identifier, cancellationToken);

    public ValueTask<TToken?> FindByReferenceIdAsync(string identifier, CancellationToken cancellationToken) => store.FindByReferenceIdAsync(identifier, cancellationToken);

    public IAsyncEnumerable<TToken> FindBySubjectAsync(string subject, CancellationToken cancellationToken) => Cache.FindBySubjectAsync(subject, cancellationToken);

    public ValueTask RemoveAsync(TToken token, CancellationToken cancellationToken) => Made?.RemoveAsync(token, cancellationToken) ?? ValueTask.CompletedTask;
}
