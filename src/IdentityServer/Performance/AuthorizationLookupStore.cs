using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using OpenIddict.EntityFrameworkCore;
using OpenIddict.EntityFrameworkCore.Models;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Performance;

/// <summary>
/// OpenIddict's EF Core authorization store, except for the lookup by id that validating every refresh token and code
/// makes: compiled once per model, without joining the client, whose id is read from the authorization's foreign key.
/// The stock lookup translated its LINQ query again each time, and the validation then loaded the client with another
/// query to read its id: together 8% of a refresh's CPU. The same for the search the authorization endpoint makes on
/// every sign-in for the user's authorization of the client (by subject, client, status and type): the stock query is
/// composed and translated per call and joins and materializes the client.
/// A new authorization's client is recorded by id, not loaded from the database first; and a sign-in's ad-hoc
/// authorization, made with its code at the authorization endpoint, is held and written with the code, in the same
/// write of the group-commit writer (<see cref="DeferredTokenWrites.HeldAuthorizations"/>): a transaction of its own,
/// through SaveChanges, was a third of a sign-in's CPU on top.
/// </summary>
public sealed class AuthorizationLookupStore(
    IMemoryCache cache,
    IOpenIddictEntityFrameworkCoreContext context,
    IOptionsMonitor<OpenIddictEntityFrameworkCoreOptions> options,
    DeferredTokenWrites deferred,
    IOptions<PerformanceOptions> performance)
    : OpenIddictEntityFrameworkCoreAuthorizationStore(cache, context, options)
{
    /// <summary>The client id of each authorization instantiated here and not written yet (its navigation is not loaded).</summary>
    private static readonly ConditionalWeakTable<OpenIddictEntityFrameworkCoreAuthorization, NewAuthorizationClient> NewAuthorizations = [];

    /// <summary>Compiled per model: a compiled query refuses a context of another model (the tests run several providers).</summary>
    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, CancellationToken, Task<OpenIddictEntityFrameworkCoreAuthorization?>>> ById = [];

    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, string, string, string, IAsyncEnumerable<OpenIddictEntityFrameworkCoreAuthorization>>> BySubjectClientStatusType = [];

    /// <summary>The authorization entity's shadow foreign key to its client.</summary>
    private const string ApplicationIdProperty = "ApplicationId";

    public override async ValueTask<OpenIddictEntityFrameworkCoreAuthorization> InstantiateAsync(CancellationToken cancellationToken)
    {
        var authorization = await base.InstantiateAsync(cancellationToken);
        authorization.Id = TimeOrderedIds.New();
        NewAuthorizations.AddOrUpdate(authorization, new NewAuthorizationClient());
        return authorization;
    }

    public override async ValueTask SetApplicationIdAsync(OpenIddictEntityFrameworkCoreAuthorization authorization, string? identifier, CancellationToken cancellationToken)
    {
        if (authorization.Application is null && NewAuthorizations.TryGetValue(authorization, out var client))
        {
            client.ApplicationId = string.IsNullOrEmpty(identifier) ? null : identifier;
            return;
        }

        await base.SetApplicationIdAsync(authorization, identifier, cancellationToken);
    }

    public override async ValueTask CreateAsync(OpenIddictEntityFrameworkCoreAuthorization authorization, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(authorization);
        if (authorization.Application is not null || !NewAuthorizations.TryGetValue(authorization, out var client))
        {
            await base.CreateAsync(authorization, cancellationToken);
            return;
        }

        if (deferred.HoldsNewEntries && performance.Value.GroupCommitTokenWrites && authorization.Type == AuthorizationTypes.AdHoc)
        {
            deferred.HeldAuthorizations.Add(new AuthorizationRow(authorization, client.ApplicationId));
            return;
        }

        // Inserted with its client's id as the foreign key (the stock store needs the client's entity).
        var db = await Context.GetDbContextAsync(cancellationToken);
        db.Add(authorization).Property(ApplicationIdProperty).CurrentValue = client.ApplicationId;
        await db.SaveChangesAsync(cancellationToken);
        NewAuthorizations.Remove(authorization);
    }

    public override async ValueTask<OpenIddictEntityFrameworkCoreAuthorization?> FindByIdAsync(string identifier, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(identifier);
        if (deferred.HeldAuthorizations.Find(row => row.Authorization.Id == identifier) is { Authorization: { } held })
        {
            return held;
        }

        var db = await Context.GetDbContextAsync(cancellationToken);
        return TrackedEntities.Find<OpenIddictEntityFrameworkCoreAuthorization>(db, identifier)
            ?? await ById.GetValue(db.Model, static _ => EF.CompileAsyncQuery((DbContext context, string id, CancellationToken ct) =>
                context.Set<OpenIddictEntityFrameworkCoreAuthorization>().AsTracking().FirstOrDefault(authorization => authorization.Id == id)))(
                db, identifier, cancellationToken);
    }

    public override IAsyncEnumerable<OpenIddictEntityFrameworkCoreAuthorization> FindAsync(string? subject, string? client, string? status, string? type,
        ImmutableArray<string>? scopes, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(subject) || string.IsNullOrEmpty(client) || string.IsNullOrEmpty(status) || string.IsNullOrEmpty(type))
        {
            return base.FindAsync(subject, client, status, type, scopes, cancellationToken);
        }

        return FindAllAsync(subject, client, status, type, scopes, cancellationToken);
    }

    /// <summary>Every criterion given: one compiled query, then the stock filter on scopes (all of them granted).</summary>
    private async IAsyncEnumerable<OpenIddictEntityFrameworkCoreAuthorization> FindAllAsync(string subject, string client, string status, string type,
        ImmutableArray<string>? scopes, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var db = await Context.GetDbContextAsync(cancellationToken);
        var query = BySubjectClientStatusType.GetValue(db.Model, static _ => EF.CompileAsyncQuery(
            (DbContext context, string subject, string client, string status, string type) =>
                context.Set<OpenIddictEntityFrameworkCoreAuthorization>().AsTracking().Where(authorization =>
                    authorization.Subject == subject && EF.Property<string>(authorization, ApplicationIdProperty) == client
                    && authorization.Status == status && authorization.Type == type)));
        await foreach (var authorization in query(db, subject, client, status, type).WithCancellation(cancellationToken))
        {
            if (scopes is not { } required || (await GetScopesAsync(authorization, cancellationToken)).ToHashSet(StringComparer.Ordinal).IsSupersetOf(required))
            {
                yield return authorization;
            }
        }
    }

    public override async ValueTask<string?> GetApplicationIdAsync(OpenIddictEntityFrameworkCoreAuthorization authorization, CancellationToken cancellationToken)
    {
        if (authorization.Application is null && NewAuthorizations.TryGetValue(authorization, out var client))
        {
            return client.ApplicationId;
        }

        if (authorization.Application is null
            && TrackedEntities.ForeignKey(await Context.GetDbContextAsync(cancellationToken), authorization, ApplicationIdProperty) is { Tracked: true } key)
        {
            return key.Value;
        }

        return await base.GetApplicationIdAsync(authorization, cancellationToken);
    }
}

/// <summary>The client of an authorization instantiated by <see cref="AuthorizationLookupStore"/>, by id, until it is written.</summary>
public sealed class NewAuthorizationClient
{
    public string? ApplicationId { get; set; }
}
