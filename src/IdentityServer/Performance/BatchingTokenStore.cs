using System.Runtime.CompilerServices;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// OpenIddict's EF Core token store, except that new token entries are written by the group-commit
/// <see cref="TokenWriteQueue"/> instead of each request's own SaveChanges, and a new entry's client and authorization
/// are recorded by id rather than loaded from the database first; in a redeeming token request
/// (<see cref="DeferredTokenWrites"/>) new entries are held and updates recorded, and all are written together when the
/// request commits; token lookups are compiled or prepared, and on SQLite and PostgreSQL leave the entry detached
/// until it is about to be written; bulk revocations also renew the revoked entries' concurrency token. Everything
/// else (pruning, searches, single updates) is the stock store.
/// </summary>
public sealed class BatchingTokenStore(
    IMemoryCache cache,
    IOpenIddictEntityFrameworkCoreContext context,
    IOptionsMonitor<OpenIddictEntityFrameworkCoreOptions> options,
    TokenWriteQueue writer,
    DeferredTokenWrites deferred,
    PreparedTokenReader preparedReader,
    Microsoft.Extensions.Options.IOptions<PerformanceOptions> performance,
    ILogger<BatchingTokenStore> logger)
    : OpenIddictEntityFrameworkCoreTokenStore(cache, context, options)
{
    /// <summary>Compiled per model: a compiled query refuses a context of another model (the tests run several providers).</summary>
    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, CancellationToken, Task<OpenIddictEntityFrameworkCoreToken?>>> TokenById = [];

    /// <summary>As <see cref="TokenById"/>, by reference id.</summary>
    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, CancellationToken, Task<OpenIddictEntityFrameworkCoreToken?>>> TokenByReferenceId = [];

    /// <summary>The token entity's shadow foreign keys to its client and authorization.</summary>
    internal const string ApplicationIdProperty = "ApplicationId", AuthorizationIdProperty = "AuthorizationId";

    /// <summary>The client and authorization ids of entries not yet written (their navigations are not loaded).</summary>
    private static readonly ConditionalWeakTable<OpenIddictEntityFrameworkCoreToken, NewTokenOwners> NewEntries = [];

    // This store is scoped: the two maps below are the request's. Its single-entry lookups are not cached by OpenIddict
    // (LazyTokenCache sends them here), so they are this request's identity map for entries its context does not track:
    // each lookup of one entry gives the same instance, as the cache did.

    /// <summary>Entries read by the prepared reader and left detached (<see cref="PreparedTokenReader"/>), by id.</summary>
    private readonly Dictionary<string, ReadEntry> _read = new(StringComparer.Ordinal);

    /// <summary>Entries this request made, by id: held ones and the group-commit writer's are not in its context.</summary>
    private readonly Dictionary<string, OpenIddictEntityFrameworkCoreToken> _made = new(StringComparer.Ordinal);

    public override async ValueTask<OpenIddictEntityFrameworkCoreToken> InstantiateAsync(CancellationToken cancellationToken)
    {
        var token = await base.InstantiateAsync(cancellationToken);
        token.Id = TimeOrderedIds.New();
        NewEntries.AddOrUpdate(token, new NewTokenOwners());
        return token;
    }

    public override async ValueTask CreateAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(token);
        var owners = NewEntries.GetValue(token, _ => new NewTokenOwners());
        if (deferred.RecordsUntilCommit || (deferred.HoldsNewEntries && performance.Value.GroupCommitTokenWrites))
        {
            // Held until the response is about to be written, then written once, with whatever the entry holds by
            // then: a redeeming token request's new entries by TokenTransaction.Commit, in one transaction with the
            // redemption; an authorization code, whose payload is attached after it is created, by
            // TokenTransaction.ReleaseHeldEntries. Until then it is new: its client and authorization stay recorded by
            // id when OpenIddict sets them again with the payload (the stock store would load both from the database).
            owners.ApplicationId ??= token.Application?.Id;
            owners.AuthorizationId ??= token.Authorization?.Id;
            deferred.Held.Add(new(token, owners));
        }
        else if (!performance.Value.GroupCommitTokenWrites)
        {
            await LoadOwnersAsync(token, owners, cancellationToken);
            await base.CreateAsync(token, cancellationToken);
        }
        else
        {
            await writer.InsertAsync(token, owners.ApplicationId ?? token.Application?.Id, owners.AuthorizationId ?? token.Authorization?.Id, cancellationToken);
            owners.Written = true;
        }

        if (token.Id is { } id)
        {
            _made[id] = token;
        }
    }

    public override async ValueTask SetApplicationIdAsync(OpenIddictEntityFrameworkCoreToken token, string? identifier, CancellationToken cancellationToken)
    {
        if (IsNew(token) && token.Application is null)
        {
            NewEntries.GetOrCreateValue(token).ApplicationId = string.IsNullOrEmpty(identifier) ? null : identifier;
            return;
        }

        // The stock setter works on the tracked entry (it loads the current reference to clear it).
        await AttachIfReadAsync(token, cancellationToken);
        await base.SetApplicationIdAsync(token, identifier, cancellationToken);
    }

    public override async ValueTask SetAuthorizationIdAsync(OpenIddictEntityFrameworkCoreToken token, string? identifier, CancellationToken cancellationToken)
    {
        if (IsNew(token) && token.Authorization is null)
        {
            NewEntries.GetOrCreateValue(token).AuthorizationId = string.IsNullOrEmpty(identifier) ? null : identifier;
            return;
        }

        await AttachIfReadAsync(token, cancellationToken);
        await base.SetAuthorizationIdAsync(token, identifier, cancellationToken);
    }

    public override async ValueTask<string?> GetApplicationIdAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        if (token.Application is null)
        {
            if (NewEntries.TryGetValue(token, out var owners) && owners.ApplicationId is not null)
            {
                return owners.ApplicationId;
            }

            // A stored entry is read without its client (see FindByIdAsync): its foreign key is the client's id.
            if (DetachedRead(token) is { } read)
            {
                return read.ApplicationId;
            }

            if (await ForeignKeyAsync(token, ApplicationIdProperty, cancellationToken) is { Tracked: true } key)
            {
                return key.Value;
            }
        }

        return await base.GetApplicationIdAsync(token, cancellationToken);
    }

    public override async ValueTask<string?> GetAuthorizationIdAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        if (token.Authorization is null)
        {
            // A new entry's owners are recorded here (none for a client credentials token): nothing to look up.
            if (NewEntries.TryGetValue(token, out var owners))
            {
                return owners.AuthorizationId;
            }

            // A stored entry with no authorization loaded: its foreign key is the authorization's id, or null for a
            // token that has none (a client credentials token).
            if (DetachedRead(token) is { } read)
            {
                return read.AuthorizationId;
            }

            if (await ForeignKeyAsync(token, AuthorizationIdProperty, cancellationToken) is { Tracked: true } key)
            {
                return key.Value;
            }
        }

        return await base.GetAuthorizationIdAsync(token, cancellationToken);
    }

    /// <summary>A tracked entry's shadow foreign key, read without the stock store's change detection and reference load.</summary>
    private async ValueTask<(bool Tracked, string? Value)> ForeignKeyAsync(OpenIddictEntityFrameworkCoreToken token, string property, CancellationToken cancellationToken) =>
        TrackedEntities.ForeignKey(await Context.GetDbContextAsync(cancellationToken), token, property);

    /// <summary>
    /// The stock lookup (the instance this request already has, else the stored entry), as a prepared statement or a
    /// query compiled once per model and without a change-detection pass: it runs for every token presented
    /// (introspection, refresh, code redemption), where translating the LINQ expression again was a tenth of an
    /// introspection's CPU. Unlike the stock query it does not join and materialize the entry's client (a wide row:
    /// about 14% of an introspection's CPU): what the server asks of it is its id, which the entry's foreign key holds
    /// (<see cref="GetApplicationIdAsync"/>). The authorization is still joined: validating a refresh token or code
    /// reads it next, and would otherwise query it again.
    /// </summary>
    public override async ValueTask<OpenIddictEntityFrameworkCoreToken?> FindByIdAsync(string identifier, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(identifier);

        // The tracked instance first: a search since the entry was read (searches are tracking queries) may have loaded
        // it into the context, and that instance is the one a write can attach.
        var db = await Context.GetDbContextAsync(cancellationToken);
        if (TrackedEntities.Find<OpenIddictEntityFrameworkCoreToken>(db, identifier) is { } tracked)
        {
            return tracked;
        }

        if (_read.TryGetValue(identifier, out var read))
        {
            return read.Token;
        }

        if (_made.TryGetValue(identifier, out var made))
        {
            return made;
        }

        return preparedReader.Supports(db)
            ? Remember(await preparedReader.FindAsync(db, PreparedTokenReader.Key.Id, identifier, cancellationToken))
            : await TokenById.GetValue(db.Model, static _ => EF.CompileAsyncQuery((DbContext context, string id, CancellationToken ct) =>
                context.Set<OpenIddictEntityFrameworkCoreToken>().AsTracking().Include(token => token.Authorization)
                    .FirstOrDefault(token => token.Id == id)))(db, identifier, cancellationToken);
    }

    /// <summary>
    /// As <see cref="FindByIdAsync"/>, by reference id: an authorization code is looked up this way when it is redeemed,
    /// and once when it is made (OpenIddict checks its new reference id is not taken).
    /// </summary>
    public override async ValueTask<OpenIddictEntityFrameworkCoreToken?> FindByReferenceIdAsync(string identifier, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(identifier);
        bool HasReferenceId(OpenIddictEntityFrameworkCoreToken token) => string.Equals(token.ReferenceId, identifier, StringComparison.Ordinal);
        var db = await Context.GetDbContextAsync(cancellationToken);
        if (TrackedEntities.FirstOrDefault<OpenIddictEntityFrameworkCoreToken>(db, HasReferenceId) is { } tracked)
        {
            return tracked;
        }

        if (_read.Values.Select(read => read.Token).Concat(_made.Values).FirstOrDefault(HasReferenceId) is { } known)
        {
            return known;
        }

        return preparedReader.Supports(db)
            ? Remember(await preparedReader.FindAsync(db, PreparedTokenReader.Key.ReferenceId, identifier, cancellationToken))
            : await TokenByReferenceId.GetValue(db.Model, static _ => EF.CompileAsyncQuery((DbContext context, string referenceId, CancellationToken ct) =>
                context.Set<OpenIddictEntityFrameworkCoreToken>().AsTracking().Include(token => token.Authorization)
                    .FirstOrDefault(token => token.ReferenceId == referenceId)))(db, identifier, cancellationToken);
    }

    /// <summary>
    /// An entry created in this request and updated again (reference tokens get their payload after creation): load
    /// its client and authorization now, so the update keeps the foreign keys the writer stored.
    /// </summary>
    public override async ValueTask UpdateAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        if (deferred.IsHeld(token))
        {
            // Not written yet: it is inserted with whatever it holds when released.
            token.ConcurrencyToken = Guid.NewGuid().ToString();
            return;
        }

        // Without its foreign keys, the stock update would write none.
        await AttachIfReadAsync(token, cancellationToken);
        if (deferred.RecordsUntilCommit)
        {
            await RecordUpdateAsync(token, cancellationToken);
            return;
        }

        if (NewEntries.TryGetValue(token, out var owners))
        {
            await LoadOwnersAsync(token, owners, cancellationToken);
        }

        try
        {
            await base.UpdateAsync(token, cancellationToken);
        }
        catch (OpenIddictExceptions.ConcurrencyException)
        {
            // The stock store leaves the entry tracked with the values it failed to write: the next lookup reads what
            // is stored now instead.
            TrackedEntities.Entry(await Context.GetDbContextAsync(cancellationToken), token).State = EntityState.Detached;
            Forget(token);
            throw;
        }
    }

    public override async ValueTask DeleteAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        await AttachIfReadAsync(token, cancellationToken);
        Forget(token);
        await base.DeleteAsync(token, cancellationToken);
    }

    /// <summary>
    /// The stock update (a new concurrency token, every column written) recorded for the request's commit rather than
    /// saved now. The update's WHERE clause still holds the concurrency token the entry was read with, so when another
    /// request redeemed or revoked the entry in between, the commit fails as the stock store's immediate save would.
    /// (Entries this request made are held, not tracked, and never come here.)
    /// </summary>
    private async ValueTask RecordUpdateAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        var db = await Context.GetDbContextAsync(cancellationToken);
        if (TrackedEntities.Entry(db, token).State == EntityState.Detached)
        {
            // Attached first, as the stock store does, so the concurrency token it was read with is the original value.
            db.Attach(token);
        }

        token.ConcurrencyToken = Guid.NewGuid().ToString();
        db.Update(token);
    }

    private async ValueTask LoadOwnersAsync(OpenIddictEntityFrameworkCoreToken token, NewTokenOwners owners, CancellationToken cancellationToken)
    {
        if (token.Application is null && owners.ApplicationId is not null)
        {
            await base.SetApplicationIdAsync(token, owners.ApplicationId, cancellationToken);
        }

        if (token.Authorization is null && owners.AuthorizationId is not null)
        {
            await base.SetAuthorizationIdAsync(token, owners.AuthorizationId, cancellationToken);
        }

        NewEntries.Remove(token);
    }

    // The stock bulk revocations set the status only. Each here also gives the revoked entries a new concurrency token,
    // so that a redemption read before the revocation and written after it (a refresh already running when its user
    // signs out everywhere, or when a replayed token revokes its authorization's tokens) fails its concurrency check,
    // on every write path, instead of writing "redeemed" over "revoked" and storing a valid successor.

    public override async ValueTask<long> RevokeBySubjectAsync(string subject, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(subject);
        return await RevokeAsync(token => token.Subject == subject && token.Status != OpenIddictConstants.Statuses.Revoked, cancellationToken);
    }

    public override async ValueTask<long> RevokeByAuthorizationIdAsync(string identifier, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(identifier);
        return await RevokeAsync(token => EF.Property<string>(token, AuthorizationIdProperty) == identifier
            && token.Status != OpenIddictConstants.Statuses.Revoked, cancellationToken);
    }

    public override async ValueTask<long> RevokeByApplicationIdAsync(string identifier, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(identifier);
        return await RevokeAsync(token => EF.Property<string>(token, ApplicationIdProperty) == identifier
            && token.Status != OpenIddictConstants.Statuses.Revoked, cancellationToken);
    }

    public override async ValueTask<long> RevokeAsync(string? subject, string? client, string? status, string? type, CancellationToken cancellationToken)
    {
        // The stock filters: each one given, none for a criterion left empty.
        return await RevokeAsync(token => (string.IsNullOrEmpty(subject) || token.Subject == subject)
            && (string.IsNullOrEmpty(client) || EF.Property<string>(token, ApplicationIdProperty) == client)
            && (string.IsNullOrEmpty(status) || token.Status == status)
            && (string.IsNullOrEmpty(type) || token.Type == type), cancellationToken);
    }

    private async ValueTask<long> RevokeAsync(System.Linq.Expressions.Expression<Func<OpenIddictEntityFrameworkCoreToken, bool>> which, CancellationToken cancellationToken)
    {
        var db = await Context.GetDbContextAsync(cancellationToken);
        Task<int> RevokeOnceAsync()
        {
            var concurrencyToken = Guid.NewGuid().ToString();
            return db.Set<OpenIddictEntityFrameworkCoreToken>().Where(which).ExecuteUpdateAsync(entries => entries
                .SetProperty(token => token.Status, OpenIddictConstants.Statuses.Revoked)
                .SetProperty(token => token.ConcurrencyToken, concurrencyToken), cancellationToken);
        }

        // One statement that locks each entry it revokes, in its own order: it can deadlock with token writes in flight
        // (PostgreSQL, SQL Server). Run alone, it is run again; in a caller's transaction, the whole transaction is
        // aborted, and whoever began it decides (the admin changes run again from the start).
        return db.Database.CurrentTransaction is null
            ? await DeadlockRetry.RunAsync(RevokeOnceAsync, logger, "A revocation of token entries")
            : await RevokeOnceAsync();
    }

    /// <summary>Keeps a detached read (the prepared reader's) as this request's instance of the entry.</summary>
    private OpenIddictEntityFrameworkCoreToken? Remember(PreparedTokenReader.ReadToken? read)
    {
        if (read is { Tracked: false, Entity.Id: { } id })
        {
            _read[id] = new ReadEntry(read.Entity, read.ApplicationId, read.AuthorizationId);
        }

        return read?.Entity;
    }

    private void Forget(OpenIddictEntityFrameworkCoreToken token)
    {
        if (token.Id is { } id)
        {
            _read.Remove(id);
            _made.Remove(id);
        }
    }

    /// <summary>The read this instance came from, while it is still detached.</summary>
    private ReadEntry? DetachedRead(OpenIddictEntityFrameworkCoreToken token) =>
        token.Id is { } id && _read.TryGetValue(id, out var read) && ReferenceEquals(read.Token, token) && !read.Attached ? read : null;

    /// <summary>
    /// Attaches a detached read entry, unchanged, with the foreign keys it was read with, before a write. Its original
    /// concurrency token and status are the ones read: OpenIddict has already changed the entry (its status, its
    /// redemption date) when it asks for the update, and the write's concurrency check must compare what was read.
    /// </summary>
    private async ValueTask AttachIfReadAsync(OpenIddictEntityFrameworkCoreToken token, CancellationToken cancellationToken)
    {
        if (DetachedRead(token) is not { } read)
        {
            return;
        }

        var entry = TrackedEntities.Entry(await Context.GetDbContextAsync(cancellationToken), token);
        if (entry.State == EntityState.Detached)
        {
            entry.Property(ApplicationIdProperty).CurrentValue = read.ApplicationId;
            entry.Property(AuthorizationIdProperty).CurrentValue = read.AuthorizationId;
            entry.State = EntityState.Unchanged;
            entry.Property(token => token.ConcurrencyToken).OriginalValue = read.ConcurrencyToken;
            entry.Property(token => token.Status).OriginalValue = read.Status;
        }

        read.Attached = true;
    }

    /// <summary>A stored entry as the prepared reader read it, before OpenIddict changed anything on it.</summary>
    private sealed class ReadEntry(OpenIddictEntityFrameworkCoreToken token, string? applicationId, string? authorizationId)
    {
        public OpenIddictEntityFrameworkCoreToken Token { get; } = token;

        public string? ApplicationId { get; } = applicationId;

        public string? AuthorizationId { get; } = authorizationId;

        public string? ConcurrencyToken { get; } = token.ConcurrencyToken;

        public string? Status { get; } = token.Status;

        /// <summary>Attached to the request's context for a write; from then on the context has its foreign keys.</summary>
        public bool Attached { get; set; }
    }

    /// <summary>Instantiated by this store and not yet written (entities get their id when instantiated, so the id cannot tell).</summary>
    private static bool IsNew(OpenIddictEntityFrameworkCoreToken token) => NewEntries.TryGetValue(token, out var owners) && !owners.Written;

    /// <summary>Adds a new entry to <paramref name="db"/> with its client and authorization referenced by id only.</summary>
    internal static void AddWithOwnerIds(DbContext db, TokenRow row)
    {
        var entry = db.Add(row.Token);
        entry.Property(ApplicationIdProperty).CurrentValue = row.ApplicationId;
        entry.Property(AuthorizationIdProperty).CurrentValue = row.AuthorizationId;
    }
}

/// <summary>The client and authorization of a token entry instantiated by <see cref="BatchingTokenStore"/>, by id, until it is written.</summary>
public sealed class NewTokenOwners
{
    public string? ApplicationId { get; set; }

    public string? AuthorizationId { get; set; }

    public bool Written { get; set; }
}
