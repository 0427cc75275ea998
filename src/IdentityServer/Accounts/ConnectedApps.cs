using System.Collections.Immutable;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Accounts;

/// <summary>
/// The applications a user gave access to: OpenIddict's valid authorizations of the user, one entry per application
/// (its scopes together, the first time access was granted). Revoking an application revokes its authorizations and
/// every token issued under them, so its refresh tokens stop working at once.
/// </summary>
public sealed class ConnectedApps(
    IOpenIddictAuthorizationManager authorizations,
    IOpenIddictApplicationManager applications,
    IOpenIddictTokenManager tokens,
    ILogger<ConnectedApps> logger)
{
    public sealed record App(string ApplicationId, string ClientId, string Name, ImmutableArray<string> Scopes, DateTimeOffset? GrantedAt);

    public async Task<IReadOnlyList<App>> ListAsync(string userId, CancellationToken ct)
    {
        var grants = new Dictionary<string, (SortedSet<string> Scopes, DateTimeOffset? GrantedAt)>(StringComparer.Ordinal);
        foreach (var authorization in await authorizations.FindBySubjectAsync(userId, ct).ToListAsync(ct))
        {
            if (await authorizations.GetStatusAsync(authorization, ct) != Statuses.Valid
                || await authorizations.GetApplicationIdAsync(authorization, ct) is not { } applicationId)
            {
                continue;
            }

            var created = await authorizations.GetCreationDateAsync(authorization, ct);
            var entry = grants.TryGetValue(applicationId, out var found) ? found : (Scopes: new SortedSet<string>(StringComparer.Ordinal), GrantedAt: created);
            entry.Scopes.UnionWith(await authorizations.GetScopesAsync(authorization, ct));
            if (created is not null && (entry.GrantedAt is null || created < entry.GrantedAt))
            {
                entry.GrantedAt = created;
            }

            grants[applicationId] = entry;
        }

        var apps = new List<App>();
        foreach (var (applicationId, grant) in grants)
        {
            var application = await applications.FindByIdAsync(applicationId, ct);
            if (application is null)
            {
                continue;
            }

            var clientId = await applications.GetClientIdAsync(application, ct) ?? applicationId;
            var name = await applications.GetLocalizedDisplayNameAsync(application, ct) ?? clientId;
            apps.Add(new App(applicationId, clientId, name, [.. grant.Scopes], grant.GrantedAt));
        }

        return [.. apps.OrderBy(a => a.Name, StringComparer.OrdinalIgnoreCase)];
    }

    /// <summary>Revokes every authorization of the user for the application, and their tokens. False when there was none.</summary>
    public async Task<bool> RevokeAsync(string userId, string applicationId, CancellationToken ct)
    {
        var revoked = 0;
        // Read first, then write: PostgreSQL runs one command at a time on a connection.
        var found = await authorizations.FindAsync(subject: userId, client: applicationId, status: null, type: null, scopes: null, ct).ToListAsync(ct);
        foreach (var authorization in found)
        {
            var id = await authorizations.GetIdAsync(authorization, ct);
            if (await authorizations.GetStatusAsync(authorization, ct) == Statuses.Valid)
            {
                await authorizations.TryRevokeAsync(authorization, ct);
                revoked++;
            }

            if (id is not null)
            {
                await tokens.RevokeByAuthorizationIdAsync(id, ct);
            }
        }

        if (revoked > 0)
        {
            logger.LogInformation(AccountEvents.ConsentRevoked, "User {UserId} revoked the access of application {ApplicationId}", userId, applicationId);
        }

        return revoked > 0;
    }
}
