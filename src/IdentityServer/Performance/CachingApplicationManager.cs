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
    SecretVerificationCache verifications,
    Clients.ClientKeySets keySets,
    IOptions<Authorization.TokenOptions> tokens)
    : OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>(cache, logger, options, store)
{
    /// <summary>The clients this request found (the manager is scoped: one per request).</summary>
    private readonly RequestLookups<OpenIddictEntityFrameworkCoreApplication> _request =
        snapshots.NewRequest(a => a.Id, a => a.ClientId is { } clientId ? ClientIdKey(clientId) : null);

    public override ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindByClientIdAsync(string identifier, CancellationToken cancellationToken = default) =>
        snapshots.FindAsync(ClientIdKey(identifier), db, _request, Copy, () => base.FindByClientIdAsync(identifier, cancellationToken));

    public override ValueTask<OpenIddictEntityFrameworkCoreApplication?> FindByIdAsync(string identifier, CancellationToken cancellationToken = default) =>
        snapshots.FindAsync(SnapshotCache<OpenIddictEntityFrameworkCoreApplication>.IdKey(identifier), db, _request, Copy,
            () => base.FindByIdAsync(identifier, cancellationToken));

    public override async ValueTask UpdateAsync(OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default)
    {
        _request.Forget(application);
        await snapshots.ChangeAsync(db, application, a => a.Id, SameAs(application), () => base.UpdateAsync(application, cancellationToken));
    }

    public override async ValueTask DeleteAsync(OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default)
    {
        _request.Forget(application);
        await snapshots.ChangeAsync(db, application, a => a.Id, SameAs(application), () => base.DeleteAsync(application, cancellationToken));
    }

    /// <summary>
    /// The client's settings, its token lifetimes cut to the server's (<see cref="Clients.ClientDescriptorMapper.CapLifetimes"/>):
    /// OpenIddict reads them here when it makes the client's tokens.
    /// </summary>
    public override async ValueTask<System.Collections.Immutable.ImmutableDictionary<string, string>> GetSettingsAsync(
        OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default) =>
        Clients.ClientDescriptorMapper.CapLifetimes(await base.GetSettingsAsync(application, cancellationToken), tokens.Value);

    /// <summary>
    /// The client's keys: those registered inline (<c>jwks</c>), or those published at its <c>jwks_uri</c>
    /// (<see cref="Clients.ClientKeySets"/>). OpenIddict verifies client assertions with them, and so do request objects.
    /// </summary>
    public override async ValueTask<Microsoft.IdentityModel.Tokens.JsonWebKeySet?> GetJsonWebKeySetAsync(
        OpenIddictEntityFrameworkCoreApplication application, CancellationToken cancellationToken = default) =>
        Clients.StoredClientProperties.Of(application).JwksUri is { } uri
            ? await keySets.GetAsync(uri, cancellationToken)
            : await base.GetJsonWebKeySetAsync(application, cancellationToken);

    /// <summary>
    /// OpenIddict refuses to store a confidential client without a secret or signing keys of its own. A client whose keys
    /// are at its jwks_uri has them all the same: while it is validated, it holds a stand-in key set
    /// (<see cref="Clients.ClientKeySets.DeclaredJson"/>), taken off again before it is stored, so storing it neither
    /// waits on its server nor fails while that server is not up yet.
    /// </summary>
    public override async IAsyncEnumerable<System.ComponentModel.DataAnnotations.ValidationResult> ValidateAsync(
        OpenIddictEntityFrameworkCoreApplication application,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var byReference = string.IsNullOrEmpty(application.JsonWebKeySet) && Clients.StoredClientProperties.Of(application).JwksUri is not null;
        if (byReference)
        {
            application.JsonWebKeySet = Clients.ClientKeySets.DeclaredJson;
        }

        try
        {
            await foreach (var result in base.ValidateAsync(application, cancellationToken))
            {
                yield return result;
            }
        }
        finally
        {
            if (byReference)
            {
                application.JsonWebKeySet = null;
            }
        }
    }

    /// <summary>
    /// Forgets every client this request found and its copies of them: the request's transaction was rolled back
    /// (to be run again), so what it read may have changed since.
    /// </summary>
    public void ForgetThisRequest() => _request.Clear();

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

    private static string ClientIdKey(string clientId) => "client_id:" + clientId;

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
