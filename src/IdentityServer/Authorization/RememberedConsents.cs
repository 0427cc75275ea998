using System.Collections.Immutable;
using System.Security.Claims;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization;

/// <summary>
/// The permanent authorization that remembers a user's consent to a client. Several sign-ins of a user to one client
/// at the same moment (a first sign-in with implicit consent, opened in several tabs) each found none and each made
/// one; now they take turns per user and client, and each looks again before it makes one. No unique index does this:
/// a consent to more scopes is a permanent authorization of its own beside the first, and the same table holds the
/// ad-hoc authorizations of single sign-ins.
/// </summary>
public sealed class RememberedConsents(
    ApplicationDbContext db,
    IOpenIddictAuthorizationManager authorizations,
    IOpenIddictAuthorizationStore<OpenIddictEntityFrameworkCoreAuthorization> stored)
{
    /// <summary>Makes the permanent authorization of <paramref name="scopes"/>, unless one covering them exists by now.</summary>
    public async Task RememberAsync(ClaimsPrincipal principal, string userId, string applicationId, ImmutableArray<string> scopes, CancellationToken ct)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(ct);
        // Any other sign-in of this user to this client that is remembering a consent goes first.
        await TransactionLocks.TakeAsync(db, $"consent:{userId}:{applicationId}", ct);
        // From the store, which always asks the database: the manager may answer searches from its per-request cache.
        if (!await stored.FindAsync(userId, applicationId, Statuses.Valid, AuthorizationTypes.Permanent, scopes, ct).AnyAsync(ct))
        {
            await authorizations.CreateAsync(principal, userId, applicationId, AuthorizationTypes.Permanent, scopes, ct);
        }

        await transaction.CommitAsync(ct);
    }
}
