using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using OpenIddict.EntityFrameworkCore;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// OpenIddict's EF Core authorization store, except for the lookup by id that validating every refresh token and code
/// makes: compiled once per model, without joining the client, whose id is read from the authorization's foreign key.
/// The stock lookup translated its LINQ query again each time, and the validation then loaded the client with another
/// query to read its id: together 8% of a refresh's CPU.
/// </summary>
public sealed class AuthorizationLookupStore(
    IMemoryCache cache,
    IOpenIddictEntityFrameworkCoreContext context,
    IOptionsMonitor<OpenIddictEntityFrameworkCoreOptions> options)
    : OpenIddictEntityFrameworkCoreAuthorizationStore(cache, context, options)
{
    /// <summary>Compiled per model: a compiled query refuses a context of another model (the tests run several providers).</summary>
    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, CancellationToken, Task<OpenIddictEntityFrameworkCoreAuthorization?>>> ById = [];

    /// <summary>The authorization entity's shadow foreign key to its client.</summary>
    private const string ApplicationIdProperty = "ApplicationId";

    public override async ValueTask<OpenIddictEntityFrameworkCoreAuthorization?> FindByIdAsync(string identifier, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(identifier);
        var db = await Context.GetDbContextAsync(cancellationToken);
        return TrackedEntities.Find<OpenIddictEntityFrameworkCoreAuthorization>(db, identifier)
            ?? await ById.GetValue(db.Model, static _ => EF.CompileAsyncQuery((DbContext context, string id, CancellationToken ct) =>
                context.Set<OpenIddictEntityFrameworkCoreAuthorization>().AsTracking().FirstOrDefault(authorization => authorization.Id == id)))(
                db, identifier, cancellationToken);
    }

    public override async ValueTask<string?> GetApplicationIdAsync(OpenIddictEntityFrameworkCoreAuthorization authorization, CancellationToken cancellationToken)
    {
        if (authorization.Application is null
            && TrackedEntities.ForeignKey(await Context.GetDbContextAsync(cancellationToken), authorization, ApplicationIdProperty) is { Tracked: true } key)
        {
            return key.Value;
        }

        return await base.GetApplicationIdAsync(authorization, cancellationToken);
    }
}
