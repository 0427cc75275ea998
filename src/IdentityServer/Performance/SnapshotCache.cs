using System.Collections.Concurrent;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace IdentityServer.Performance;

/// <summary>
/// A small process-wide cache of immutable snapshots with a lifetime, for entities read on every request (clients,
/// scopes). Callers get copies, never the cached instance. Bounded: when full it starts over.
/// </summary>
public sealed class SnapshotCache<T>(IOptions<PerformanceOptions> options, TimeProvider clock) where T : class
{
    private const int Capacity = 10_000;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    // Counts removals: a manager that may have read an entity before a removal must not cache it after (it may be the
    // old row).
    private long _removals;

    /// <summary>The lookup key of an entity by id.</summary>
    public static string IdKey(string id) => "id:" + id;

    /// <summary>
    /// A new scoped manager's lookups, for one request. An entity has two lookup keys, <see cref="IdKey"/> of its
    /// <paramref name="id"/> and its <paramref name="naturalKey"/> (by client_id, by name): found under one, it is this
    /// request's under both.
    /// </summary>
    public RequestLookups<T> NewRequest(Func<T, string?> id, Func<T, string?> naturalKey) => new(id, naturalKey, Interlocked.Read(ref _removals));

    public bool Enabled => options.Value.EntityCacheLifetime > TimeSpan.Zero;

    /// <summary>True when <paramref name="key"/> is cached: its snapshot, or null for a remembered miss.</summary>
    public bool TryGet(string key, out T? value)
    {
        if (_entries.TryGetValue(key, out var entry) && entry.ExpiresAt > clock.GetUtcNow())
        {
            value = entry.Value;
            return true;
        }

        value = null;
        return false;
    }

    public void Set(string key, T? value)
    {
        if (!Enabled)
        {
            return;
        }

        if (_entries.Count >= Capacity)
        {
            _entries.Clear();
        }

        _entries[key] = new Entry(value, clock.GetUtcNow() + options.Value.EntityCacheLifetime);
    }

    /// <summary>Removes every entry whose value matches (e.g. the same entity id under any key).</summary>
    public void RemoveWhere(Func<T, bool> predicate)
    {
        Interlocked.Increment(ref _removals);
        foreach (var (key, entry) in _entries)
        {
            if (entry.Value is not null && predicate(entry.Value))
            {
                _entries.TryRemove(key, out _);
            }
        }
    }

    public void Remove(string key)
    {
        Interlocked.Increment(ref _removals);
        _entries.TryRemove(key, out _);
    }

    /// <summary>
    /// Removes <paramref name="key"/> now and, when <paramref name="db"/> is in a transaction (an admin change and its
    /// audit entry), again once it commits: until then other requests still read, and could cache, the old row.
    /// </summary>
    public void RemoveNowAndAfterCommit(DbContext db, string key) => NowAndAfterCommit(db, () => Remove(key));

    public void Clear()
    {
        Interlocked.Increment(ref _removals);
        _entries.Clear();
    }

    /// <summary>
    /// Finds an entity through the cache, for one request: what this request already found under <paramref name="key"/>
    /// (<see cref="RequestLookups{T}"/>), else on a hit the request's own instance: the one <paramref name="db"/> already
    /// tracks (a query in this request loaded it), else this request's copy of the snapshot, made once per request and
    /// kept in <paramref name="request"/>, so that repeated lookups in one request see one instance, as without the
    /// cache. The copy is not attached to <paramref name="db"/>: attaching it (EF Core's change-tracking snapshot of
    /// every property) was 5% of a client credentials token's CPU, for entities the protocol endpoints only read; a
    /// change attaches it first (<see cref="ChangeAsync"/>). On a miss,
    /// <paramref name="load"/>s it and keeps a copy. With <paramref name="rememberMisses"/>, that nothing was found is
    /// kept too (the caller drops the key when it creates the entity). A key with a NUL (a client_id or scope name a
    /// request sent) is not found, without a query (<see cref="DatabaseErrors.CanBeStoredName"/>).
    /// </summary>
    public async ValueTask<T?> FindAsync(string key, DbContext db, RequestLookups<T> request, Func<T, T> copy, Func<ValueTask<T?>> load,
        bool rememberMisses = false)
    {
        if (!DatabaseErrors.CanBeStoredName(key))
        {
            return null;
        }

        if (request.Found.TryGetValue(key, out var found))
        {
            return found;
        }

        found = await FindForRequestAsync(key, db, request, copy, load, rememberMisses);
        if (found is not null)
        {
            request.Found[key] = found;
            if (request.Id(found) is { } id)
            {
                request.Found.TryAdd(IdKey(id), found);
            }

            if (request.NaturalKey(found) is { } naturalKey)
            {
                request.Found.TryAdd(naturalKey, found);
            }
        }

        return found;
    }

    private async ValueTask<T?> FindForRequestAsync(string key, DbContext db, RequestLookups<T> request, Func<T, T> copy,
        Func<ValueTask<T?>> load, bool rememberMisses)
    {
        if (TryGet(key, out var snapshot))
        {
            if (snapshot is null)
            {
                return null;
            }

            if (request.Id(snapshot) is not { } entityId)
            {
                // Not expected (stored entities have ids): nothing to share within the request by.
                return copy(snapshot);
            }

            if (TrackedEntities.Find<T>(db, entityId) is { } tracked)
            {
                return tracked;
            }

            if (!request.Copies.TryGetValue(entityId, out var mine))
            {
                request.Copies[entityId] = mine = copy(snapshot);
            }

            return mine;
        }

        // Something removed since this request's manager was made may be what the load returns, read before: OpenIddict
        // keeps what a request read and answers its later lookups (by another key, say) from that. Such a load is this
        // request's alone; the check after the Set catches a removal made meanwhile.
        var entity = await load();
        if ((entity is not null || rememberMisses) && Interlocked.Read(ref _removals) == request.RemovalsAtStart)
        {
            Set(key, entity is null ? null : copy(entity));
            if (Interlocked.Read(ref _removals) != request.RemovalsAtStart)
            {
                _entries.TryRemove(key, out _);
            }
        }

        return entity;
    }

    /// <summary>
    /// Runs a change (update, delete) with the entity's entries dropped before and after it, whatever its outcome. A
    /// request's detached copy is attached to <paramref name="db"/> first (in place of another instance of the same
    /// entity the context may track), so that the change, and the validation before it, which looks the entity up
    /// again through the store, see one instance.
    /// </summary>
    public async ValueTask ChangeAsync(DbContext db, T entity, Func<T, string?> id, Func<T, bool> isSameEntity, Func<ValueTask> change)
    {
        if (TrackedEntities.Entry(db, entity).State == EntityState.Detached)
        {
            if (TrackedEntities.Find<T>(db, id(entity)) is { } other)
            {
                db.Entry(other).State = EntityState.Detached;
            }

            db.Set<T>().Attach(entity);
        }

        RemoveWhere(isSameEntity);
        try
        {
            await change();
        }
        finally
        {
            NowAndAfterCommit(db, () => RemoveWhere(isSameEntity));
        }
    }

    private static void NowAndAfterCommit(DbContext db, Action remove)
    {
        remove();
        if (db.Database.CurrentTransaction is not null)
        {
            AfterCommit.Run(db, remove);
        }
    }

    private sealed record Entry(T? Value, DateTimeOffset ExpiresAt);
}

/// <summary>
/// What one request found through a <see cref="SnapshotCache{T}"/> (a scoped manager keeps one): its copies of cached
/// entities, by id, and what it found under each lookup key (an entity found under one of its keys counts as found
/// under all). A request that found an entity goes on with it: OpenIddict looks a request's client up several times,
/// by client_id and by id, and treats a client missing at a later lookup as a bug (a 500). An entity deleted by another
/// request in between must not change this request's mind halfway; its writes then meet the deletion and fail as such.
/// </summary>
public sealed class RequestLookups<T> where T : class
{
    internal RequestLookups(Func<T, string?> id, Func<T, string?> naturalKey, long removalsAtStart)
    {
        Id = id;
        NaturalKey = naturalKey;
        RemovalsAtStart = removalsAtStart;
    }

    /// <summary>An entity's id.</summary>
    internal Func<T, string?> Id { get; }

    /// <summary>An entity's lookup key other than by id (by client_id, by name).</summary>
    internal Func<T, string?> NaturalKey { get; }

    /// <summary>The cache's count of removals when the manager was made (before its first lookup in the request).</summary>
    internal long RemovalsAtStart { get; }

    internal Dictionary<string, T> Copies { get; } = new(StringComparer.Ordinal);

    internal Dictionary<string, T> Found { get; } = new(StringComparer.Ordinal);

    /// <summary>This request changes the entity itself: later lookups see what it made of it.</summary>
    public void Forget(T entity)
    {
        foreach (var key in Found.Where(found => ReferenceEquals(found.Value, entity) || Id(found.Value) == Id(entity)).Select(found => found.Key).ToList())
        {
            Found.Remove(key);
        }
    }

    /// <summary>Forgets everything: the request's transaction was rolled back (to be run again), so what it read may have changed since.</summary>
    public void Clear()
    {
        Found.Clear();
        Copies.Clear();
    }
}
