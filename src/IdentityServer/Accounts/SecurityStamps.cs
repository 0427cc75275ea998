using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts;

/// <summary>
/// Gives an account a new security stamp, which ends every session cookie issued before it. Identity's own
/// <c>UpdateSecurityStampAsync</c> saves the whole user under its concurrency check, so a change made to the user at the
/// same moment (an admin's, or the user's own in another browser) made it fail, silently for callers that ignore its
/// result: the stamp stayed, and a cookie re-issued with the unsaved one was refused at its next request.
/// </summary>
public sealed class SecurityStamps(ApplicationDbContext db)
{
    /// <summary>
    /// Writes a new stamp, and a new concurrency stamp so that a change still based on the old row fails its check
    /// rather than put the old stamp back, whatever else changed the user meanwhile. A tracked <paramref name="user"/>
    /// is then read again, so a later change to it in this request starts from the stored row (a concurrent admin
    /// change included) and not from what this request read before; call this after the request's own changes to the
    /// user are saved.
    /// </summary>
    public async Task RenewAsync(ApplicationUser user, CancellationToken ct)
    {
        var stamp = Guid.NewGuid().ToString("N").ToUpperInvariant();
        var concurrency = Guid.NewGuid().ToString();
        await db.Users.Where(u => u.Id == user.Id).ExecuteUpdateAsync(u => u
            .SetProperty(x => x.SecurityStamp, stamp)
            .SetProperty(x => x.ConcurrencyStamp, concurrency), ct);

        var entry = db.Entry(user);
        if (entry.State == EntityState.Detached)
        {
            user.SecurityStamp = stamp;
            user.ConcurrencyStamp = concurrency;
        }
        else
        {
            await entry.ReloadAsync(ct);
        }
    }
}
