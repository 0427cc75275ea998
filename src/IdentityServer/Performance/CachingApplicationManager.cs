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
    /// <summary>This request's copies of cached clients, by id (the manager is scoped: one per request).</summary>
    private readonly Dictionary<string, OpenIddictEntityFrameworkCoreApplication> _requestCopies = new(StringComparer.Ordinal);

    /// <summary>
    /// Clients this request found, by lookup key: a request that found its client goes on with it. OpenIddict looks the
    /// client up several times per request and treats a later miss as a bug (a 500): a client deleted by another
    /// request in between must not change its mind halfway (the request's writes then meet the deletion and fail as
    /// such).
    /// </summary>
    private readonly Dictionary<string, OpenIddictEntityFrameworkCoreApplication> _foundInRequest = new(StringComparer.Ordinal);

    public override ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindByClientIdAsync(string identifier, CancellationToken cancellationToken = default) =>
        FindAsync("client_id:" + identifier, () => base.FindByClientIdAsync(identifier, cancellationToken));

    public override ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindByIdAsync(string identifier, CancellationToken cancellationToken = default) =>
        FindAsync("id:" + identifier, () => base.FindByIdAsync(identifier, cancellationToken));

    public override async ValueTask UpdateAsync(OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default)
    {
        Forget(application);
        await snapshots.ChangeAsync(db, application, a => a.Id, SameAs(application), () => base.UpdateAsync(application, cancellationToken));
    }

    public override async ValueTask DeleteAsync(OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default)
    {
        Forget(application);
        await snapshots.ChangeAsync(db, application, a => a.Id, SameAs(application), () => base.DeleteAsync(application, cancellationToken));
    }

    private async ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindAsync(string key, Func<ValueTask<OpenIddictEntityFrameworkCoreApplication?>> load)
    {
        if (_foundInRequest.TryGetValue(key, out var found))
        {
            return found;
        }

        found = await snapshots.FindAsync(key, db, _requestCopies, Copy, a => a.Id, load);
        if (found is not null)
        {
            _foundInRequest[key] = found;
        }

        return found;
    }

    /// <summary>
    /// Forgets every client this request found and its copies of them: the request's transaction was rolled back
    /// (to be run again), so what it read may have changed since.
    /// </summary>
    public void ForgetThisRequest()
    {
        _foundInRequest.Clear();
        _requestCopies.Clear();
    }

    /// <summary>This request changes the client itself: later lookups see what it made of it.</summary>
    private void Forget(OpenIddictEntityFrameworkCoreApplication application)
    {
        foreach (var key in _foundInRequest.Where(found => ReferenceEquals(found.Value, application) || found.Value.Id == application.Id).Select(found => found.Key).ToList())
        {
            _foundInRequest.Remove(key);
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

    private static Func<OpenIddictEntityFrameworkCoreApplication, bool> SameAs(OpenIddictEntityFrameworkCoreApplication application) =>
        cached => cached.Id == application.Id || cached.ClientId == application.ClientId;

    /// <summary>A copy: callers may change or update it without touching the cached snapshot.</summary>
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
