using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Core;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// OpenIddict's application manager with two additions for the token endpoint's hot path:
/// <list type="bullet">
/// <item>clients found by client_id or id are kept in a process-wide cache (<see cref="PerformanceOptions.EntityCacheLifetime"/>),
/// handed out as copies and dropped at once when this instance updates or deletes the client;</item>
/// <item>successful secret verifications are remembered (<see cref="SecretVerificationCache"/>).</item>
/// </list>
/// Secrets are stored exactly as OpenIddict stores them (PBKDF2-SHA256, 10,000 iterations, 128-bit salt, 256-bit
/// subkey, base64 with format byte 0x01), whoever supplied them; this class changes when they are verified, not how
/// they are stored.
/// </summary>
public sealed class CachingApplicationManager(
    IOpenIddictApplicationCache<OpenIddictEntityFrameworkCoreApplication> cache,
    ILogger<OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>> logger,
    IOptionsMonitor<OpenIddictCoreOptions> options,
    IOpenIddictApplicationStore<OpenIddictEntityFrameworkCoreApplication> store,
    ApplicationDbContext db,
    SnapshotCache<OpenIddictEntityFrameworkCoreApplication> snapshots,
    SecretVerificationCache verifications)
    : OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>(cache, logger, options, store)
{
    public override async ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindByClientIdAsync(string identifier, CancellationToken cancellationToken = default)
    {
        if (snapshots.TryGet("client_id:" + identifier, out var snapshot))
        {
            return Track(snapshot);
        }

        var application = await base.FindByClientIdAsync(identifier, cancellationToken);
        if (application is not null)
        {
            snapshots.Set("client_id:" + identifier, Copy(application));
        }

        return application;
    }

    public override async ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindByIdAsync(string identifier, CancellationToken cancellationToken = default)
    {
        if (snapshots.TryGet("id:" + identifier, out var snapshot))
        {
            return Track(snapshot);
        }

        var application = await base.FindByIdAsync(identifier, cancellationToken);
        if (application is not null)
        {
            snapshots.Set("id:" + identifier, Copy(application));
        }

        return application;
    }

    public override async ValueTask UpdateAsync(OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default)
    {
        Forget(application);
        try
        {
            await base.UpdateAsync(application, cancellationToken);
        }
        finally
        {
            Forget(application);
        }
    }

    public override async ValueTask DeleteAsync(OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default)
    {
        Forget(application);
        try
        {
            await base.DeleteAsync(application, cancellationToken);
        }
        finally
        {
            Forget(application);
        }
    }

    protected override async ValueTask<bool> ValidateClientSecretAsync(string secret, string comparand, CancellationToken cancellationToken = default)
    {
        if (verifications.WasVerified(comparand, secret))
        {
            return true;
        }

        if (!await base.ValidateClientSecretAsync(secret, comparand, cancellationToken))
        {
            return false;
        }

        verifications.Remember(comparand, secret);
        return true;
    }

    private void Forget(OpenIddictEntityFrameworkCoreApplication application) =>
        snapshots.RemoveWhere(cached => cached.Id == application.Id || cached.ClientId == application.ClientId);

    /// <summary>A detached copy: callers may change or update it without touching the cached snapshot.</summary>
    /// <summary>
    /// The request's own instance of a cached entity: the one its database context already tracks, or a copy attached
    /// to it as unchanged, so that a later query, update or delete in the same request sees one instance, as without the cache.
    /// </summary>
    private OpenIddictEntityFrameworkCoreApplication Track(OpenIddictEntityFrameworkCoreApplication snapshot)
    {
        var set = db.Set<OpenIddictEntityFrameworkCoreApplication>();
        if (set.Local.FirstOrDefault(e => e.Id == snapshot.Id) is { } tracked)
        {
            return tracked;
        }

        var copy = Copy(snapshot);
        set.Attach(copy);
        return copy;
    }

    private static OpenIddictEntityFrameworkCoreApplication Copy(OpenIddictEntityFrameworkCoreApplication source) => new()
    {
        Id = source.Id,
        ApplicationType = source.ApplicationType,
        ClientId = source.ClientId,
        ClientSecret = source.ClientSecret,
        ClientType = source.ClientType,
        ConcurrencyToken = source.ConcurrencyToken,
        ConsentType = source.ConsentType,
        DisplayName = source.DisplayName,
        DisplayNames = source.DisplayNames,
        JsonWebKeySet = source.JsonWebKeySet,
        Permissions = source.Permissions,
        PostLogoutRedirectUris = source.PostLogoutRedirectUris,
        Properties = source.Properties,
        RedirectUris = source.RedirectUris,
        Requirements = source.Requirements,
        Settings = source.Settings,
    };
}
