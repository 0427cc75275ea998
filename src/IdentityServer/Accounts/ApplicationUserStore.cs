using System.Runtime.CompilerServices;
using IdentityServer.Data;
using IdentityServer.Performance;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace IdentityServer.Accounts;

/// <summary>
/// Identity's EF Core user store, except that the lookup by id, which every authorize and token request makes, is a
/// query compiled once per model. The stock lookup (<c>DbSet.FindAsync</c>) builds and translates a new expression
/// each time: 6% of a sign-in's CPU.
/// </summary>
public sealed class ApplicationUserStore(ApplicationDbContext context, IdentityErrorDescriber? describer = null)
    : UserStore<ApplicationUser, IdentityRole, ApplicationDbContext, string, IdentityUserClaim<string>, IdentityUserRole<string>,
        IdentityUserLogin<string>, IdentityUserToken<string>, IdentityRoleClaim<string>, IdentityUserPasskey<string>>(context, describer)
{
    /// <summary>Compiled per model: a compiled query refuses a context of another model (the tests run several providers).</summary>
    private static readonly ConditionalWeakTable<IModel, Func<DbContext, string, CancellationToken, Task<ApplicationUser?>>> UserById = [];

    public override Task<ApplicationUser?> FindByIdAsync(string userId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(userId);

        // Like FindAsync: the instance the context already tracks, else the stored one (tracked).
        return TrackedEntities.Find<ApplicationUser>(Context, userId) is { } tracked
            ? Task.FromResult<ApplicationUser?>(tracked)
            : UserById.GetValue(Context.Model, static _ => EF.CompileAsyncQuery((DbContext db, string id, CancellationToken ct) =>
                db.Set<ApplicationUser>().AsTracking().FirstOrDefault(user => user.Id == id)))(Context, userId, cancellationToken);
    }
}
