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
    /// <summary>Seeds the PostgreSQL advisory lock keys of user and client pairs (beside the admin changes' 727_001).</summary>
    private const long LockKeySeed = 727_002;

    /// <summary>Makes the permanent authorization of <paramref name="scopes"/>, unless one covering them exists by now.</summary>
    public async Task RememberAsync(ClaimsPrincipal principal, string userId, string applicationId, ImmutableArray<string> scopes, CancellationToken ct)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(ct);
        await TakeTurnAsync(userId, applicationId, ct);
        // From the store, which always asks the database: the manager may answer searches from its per-request cache.
        if (!await stored.FindAsync(userId, applicationId, Statuses.Valid, AuthorizationTypes.Permanent, scopes, ct).AnyAsync(ct))
        {
            await authorizations.CreateAsync(principal, userId, applicationId, AuthorizationTypes.Permanent, scopes, ct);
        }

        await transaction.CommitAsync(ct);
    }

    /// <summary>
    /// Waits for any other sign-in of this user to this client that is remembering a consent, until the transaction
    /// ends. SQLite needs nothing: a transaction holds its one write lock from the start.
    /// </summary>
    private async Task TakeTurnAsync(string userId, string applicationId, CancellationToken ct)
    {
        var pair = $"consent:{userId}:{applicationId}";
        switch (DatabaseProviders.Of(db))
        {
            case DatabaseProvider.PostgreSql:
                await db.Database.ExecuteSqlRawAsync($"SELECT pg_advisory_xact_lock(hashtextextended({{0}}, {LockKeySeed}))", [pair], ct);
                break;
            case DatabaseProvider.SqlServer:
                await db.Database.ExecuteSqlRawAsync(
                    "EXEC sp_getapplock @Resource = {0}, @LockMode = N'Exclusive', @LockOwner = N'Transaction'", [$"identityserver:{pair}"], ct);
                break;
        }
    }
}
