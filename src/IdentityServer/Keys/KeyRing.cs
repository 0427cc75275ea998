using System.Security.Cryptography;
using IdentityServer.Authorization;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Keys;

/// <summary>
/// The keys the server signs and encrypts tokens with. Certificates when configured; otherwise keys generated and
/// stored in the database, where the signing key rotates by itself: a new key is created and published
/// <see cref="KeysOptions.PublishAhead"/> before it starts signing, signs for <see cref="KeysOptions.RotationPeriod"/>,
/// and stays published after it retires for the longest access or id token lifetime plus
/// <see cref="KeysOptions.RetirementMargin"/>. Every instance reads the same rows and derives the same active key
/// from their activation times; a unique (use, slot) index makes sure racing instances create one key per slot.
/// Loaded at start by the database initializer and refreshed every <see cref="KeysOptions.CheckInterval"/>.
/// </summary>
public sealed class KeyRing(
    IOptions<KeysOptions> options,
    IOptions<TokenOptions> tokens,
    IDataProtectionProvider dataProtection,
    IServiceScopeFactory scopes,
    TimeProvider clock,
    ILogger<KeyRing> logger)
{
    /// <summary>The Data Protection purpose of every stored key's private part.</summary>
    internal const string ProtectorPurpose = "IdentityServer.Keys.StoredKey.v1";

    private readonly SemaphoreSlim _refresh = new(1, 1);
    private readonly Dictionary<string, SigningCredentials> _parsed = new(StringComparer.Ordinal);
    private volatile Snapshot? _snapshot;

    private long _version;

    /// <summary>Raised after the stored keys changed (a key created, activated early, or removed).</summary>
    public event Action? Changed;

    /// <summary>Changes whenever the stored keys change; with <see cref="PublishedUntil"/>, what caches of the JWKS depend on.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>
    /// Until when the published set stays as it is now, unless <see cref="Version"/> changes: the next activation or
    /// unpublication time (the JWKS and discovery can be served from memory until then).
    /// </summary>
    public DateTimeOffset PublishedUntil()
    {
        var snapshot = Current;
        var now = clock.GetUtcNow();
        var until = DateTimeOffset.MaxValue;
        foreach (var key in snapshot.Signing)
        {
            if (key.ActivatesAt > now && key.ActivatesAt < until)
            {
                until = key.ActivatesAt;
            }

            if (key.RetiresAt + PublishedAfterRetirement is { } unpublished && unpublished > now && unpublished < until)
            {
                until = unpublished;
            }
        }

        return until;
    }

    private Snapshot Current => _snapshot ?? throw new InvalidOperationException("The key ring is used before the database initializer loaded it.");

    /// <summary>True when signing keys come from the database (and rotate); false with a configured signing certificate.</summary>
    public bool Rotates => Current.Certificate is null;

    /// <summary>The signing credentials published at start (what OpenIddict's own configuration checks).</summary>
    public IReadOnlyList<SigningCredentials> SigningCredentials => Published();

    public IReadOnlyList<EncryptingCredentials> EncryptionCredentials => Current.Encryption;

    /// <summary>What signs access and id tokens now: the latest key whose activation time has come.</summary>
    public SigningCredentials ActiveSigningCredentials
    {
        get
        {
            var snapshot = Current;
            if (snapshot.Certificate is { } certificate)
            {
                return certificate;
            }

            var now = clock.GetUtcNow();
            var active = snapshot.Signing[0];
            foreach (var key in snapshot.Signing)
            {
                if (key.ActivatesAt <= now)
                {
                    active = key;
                }
            }

            return active.Credentials;
        }
    }

    /// <summary>What signs the tokens only this server reads (codes, refresh tokens, device and user codes): HMAC-SHA256.</summary>
    public SigningCredentials InternalSigningCredentials => Current.Internal;

    /// <summary>Every key a token of ours may be signed with: all stored signing keys (published or not yet removed) and the internal key.</summary>
    public IReadOnlyList<SecurityKey> ValidationKeys => Current.ValidationKeys;

    /// <summary>The signing keys in the JWKS now: the next key, the active one, and retired ones until their tokens have expired.</summary>
    public IReadOnlyList<SigningCredentials> Published()
    {
        var snapshot = Current;
        if (snapshot.Certificate is { } certificate)
        {
            return [certificate];
        }

        var now = clock.GetUtcNow();
        return [.. snapshot.Signing.Where(k => k.RetiresAt is null || k.RetiresAt + PublishedAfterRetirement > now).Select(k => k.Credentials)];
    }

    /// <summary>Every stored signing key with its state now, for operators.</summary>
    public IReadOnlyList<SigningKeyState> Describe()
    {
        var snapshot = Current;
        var now = clock.GetUtcNow();
        if (snapshot.Certificate is { } certificate)
        {
            return [new SigningKeyState(certificate.Kid ?? "", certificate.Algorithm, 0, "active", null, null, null, null)];
        }

        var active = ActiveSigningCredentials;
        return [.. snapshot.Signing.Select(k => new SigningKeyState(
            k.Row.Id, k.Row.Algorithm, k.Row.Slot,
            k.ActivatesAt > now ? "next" : ReferenceEquals(k.Credentials, active) ? "active" : "retired",
            k.Row.CreatedAt, k.ActivatesAt, k.RetiresAt, k.RetiresAt + PublishedAfterRetirement))];
    }

    /// <summary>Retired keys stay published for the longest lifetime of what they signed (access and id tokens) plus the margin.</summary>
    private TimeSpan PublishedAfterRetirement =>
        (tokens.Value.AccessTokenLifetime > tokens.Value.IdentityTokenLifetime ? tokens.Value.AccessTokenLifetime : tokens.Value.IdentityTokenLifetime)
        + options.Value.RetirementMargin;

    /// <summary>Retired keys are deleted once nothing they may have signed (refresh tokens included) can still be presented.</summary>
    private TimeSpan KeptAfterRetirement =>
        new[] { tokens.Value.AccessTokenLifetime, tokens.Value.IdentityTokenLifetime, tokens.Value.RefreshTokenLifetime }.Max()
        + options.Value.RetirementMargin;

    /// <summary>At start: creates what is missing (first keys, a due rotation) and loads everything.</summary>
    public async Task LoadAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        await _refresh.WaitAsync(cancellationToken);
        try
        {
            await LoadCoreAsync(db, cancellationToken);
        }
        finally
        {
            _refresh.Release();
        }
    }

    /// <summary>Periodically, on every instance: picks up keys other instances created, rotates when due, removes expired keys.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        await LoadAsync(scope.ServiceProvider.GetRequiredService<ApplicationDbContext>(), cancellationToken);
    }

    /// <summary>
    /// Starts signing with a new key now (an operator's decision, e.g. a suspected leak): the waiting next key if there
    /// is one (it is already published), otherwise a new key. Tokens signed by the previous key stay valid while it is published.
    /// </summary>
    public async Task<SigningKeyState> RotateNowAsync(CancellationToken cancellationToken)
    {
        if (!Rotates)
        {
            throw new InvalidOperationException("The signing key is a configured certificate; replace the certificate to rotate it.");
        }

        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        await _refresh.WaitAsync(cancellationToken);
        try
        {
            var now = clock.GetUtcNow();
            var keys = await SigningRowsAsync(db, cancellationToken);
            var latest = keys[^1];
            if (ActivationOf(latest) > now)
            {
                var tracked = await db.StoredKeys.SingleAsync(k => k.Id == latest.Id, cancellationToken);
                tracked.ActivatesAt = now;
                await db.SaveChangesAsync(cancellationToken);
            }
            else
            {
                await CreateSigningKeyAsync(db, latest.Slot + 1, now, cancellationToken);
            }

            logger.LogWarning(KeyEvents.RotatedNow, "Signing key rotated now by an operator");
            db.ChangeTracker.Clear();
            await LoadCoreAsync(db, cancellationToken);
            return Describe().Single(k => k.State == "active");
        }
        finally
        {
            _refresh.Release();
        }
    }

    private async Task LoadCoreAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        var protector = dataProtection.CreateProtector(ProtectorPurpose);
        var certificate = _snapshot?.Certificate ?? LoadSigningCertificate();
        var encryption = _snapshot?.Encryption ?? await LoadEncryptionAsync(db, protector, cancellationToken);
        var internalKey = _snapshot?.Internal ?? await LoadInternalKeyAsync(db, protector, cancellationToken);

        var loaded = new List<LoadedKey>();
        if (certificate is null)
        {
            var rows = await RotateIfDueAsync(db, cancellationToken);
            for (var i = 0; i < rows.Count; i++)
            {
                var row = rows[i];
                if (!_parsed.TryGetValue(row.Id, out var credentials))
                {
                    credentials = _parsed[row.Id] = Parse(row, protector);
                }

                loaded.Add(new LoadedKey(row, credentials, ActivationOf(row), i + 1 < rows.Count ? ActivationOf(rows[i + 1]) : null));
            }

            foreach (var gone in _parsed.Keys.Except(rows.Select(r => r.Id)).ToList())
            {
                _parsed.Remove(gone);
            }
        }

        var validation = new List<SecurityKey> { internalKey.Key };
        validation.AddRange(certificate is not null ? [certificate.Key] : loaded.Select(k => k.Credentials.Key));
        var previous = _snapshot;
        _snapshot = new Snapshot(loaded, certificate, internalKey, encryption, validation);
        if (previous is not null && !previous.Signing.Select(k => (k.Row.Id, k.ActivatesAt)).SequenceEqual(loaded.Select(k => (k.Row.Id, k.ActivatesAt))))
        {
            Interlocked.Increment(ref _version);
            Changed?.Invoke();
        }
    }

    /// <summary>Creates the first key, or the next one when the active key's rotation is due; deletes keys nothing can use any more.</summary>
    private async Task<List<StoredKey>> RotateIfDueAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var keys = await SigningRowsAsync(db, cancellationToken);
        if (keys.Count == 0)
        {
            // First start: nothing can have been published ahead, so the first key signs at once.
            await CreateSigningKeyAsync(db, 0, now, cancellationToken);
            return await SigningRowsAsync(db, cancellationToken);
        }

        var latest = keys[^1];
        var activation = ActivationOf(latest);
        if (activation <= now && now >= activation + options.Value.RotationPeriod - options.Value.PublishAhead)
        {
            // Never sooner than PublishAhead from now: relying parties must have had the chance to fetch it.
            var next = activation + options.Value.RotationPeriod;
            await CreateSigningKeyAsync(db, latest.Slot + 1, next > now + options.Value.PublishAhead ? next : now + options.Value.PublishAhead, cancellationToken);
            keys = await SigningRowsAsync(db, cancellationToken);
        }

        var expired = keys.Where((k, i) => i + 1 < keys.Count && ActivationOf(keys[i + 1]) + KeptAfterRetirement <= now).ToList();
        if (expired.Count > 0)
        {
            await db.StoredKeys.Where(k => k.Use == StoredKey.SigningUse && expired.Select(e => e.Id).Contains(k.Id)).ExecuteDeleteAsync(cancellationToken);
            logger.LogInformation(KeyEvents.KeyRemoved, "Removed {Count} retired signing key(s): {KeyIds}", expired.Count, expired.Select(e => e.Id));
            keys = await SigningRowsAsync(db, cancellationToken);
        }

        return keys;
    }

    private async Task CreateSigningKeyAsync(ApplicationDbContext db, int slot, DateTimeOffset activatesAt, CancellationToken cancellationToken)
    {
        var algorithm = options.Value.Algorithm;
        var key = new StoredKey
        {
            Id = NewKeyId(),
            Use = StoredKey.SigningUse,
            Algorithm = algorithm,
            Slot = slot,
            ProtectedKey = dataProtection.CreateProtector(ProtectorPurpose).Protect(Convert.ToBase64String(
                algorithm == SecurityAlgorithms.EcdsaSha256 ? CreateEcdsaKey() : CreateRsaKey())),
            CreatedAt = clock.GetUtcNow(),
            ActivatesAt = activatesAt,
        };
        db.StoredKeys.Add(key);
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            logger.LogInformation(KeyEvents.KeyCreated, "Created signing key {KeyId} ({Algorithm}, slot {Slot}), signing from {ActivatesAt:O}",
                key.Id, algorithm, slot, activatesAt);
        }
        catch (DbUpdateException)
        {
            // Another instance created the key for this slot at the same moment: theirs is the one.
            db.ChangeTracker.Clear();
        }
    }

    private static Task<List<StoredKey>> SigningRowsAsync(ApplicationDbContext db, CancellationToken ct) =>
        db.StoredKeys.AsNoTracking().Where(k => k.Use == StoredKey.SigningUse).OrderBy(k => k.Slot).ToListAsync(ct);

    private static DateTimeOffset ActivationOf(StoredKey key) => key.ActivatesAt ?? key.CreatedAt;

    private SigningCredentials Parse(StoredKey row, IDataProtector protector)
    {
        var material = Convert.FromBase64String(Unprotect(protector, row.Id, row.ProtectedKey));
        if (row.Algorithm == SecurityAlgorithms.EcdsaSha256)
        {
            var ecdsa = ECDsa.Create();
            ecdsa.ImportPkcs8PrivateKey(material, out _);
            return new SigningCredentials(new ECDsaSecurityKey(ecdsa) { KeyId = row.Id, CryptoProviderFactory = new RememberingCryptoProviderFactory() },
                SecurityAlgorithms.EcdsaSha256);
        }

        var rsa = RSA.Create();
        rsa.ImportPkcs8PrivateKey(material, out _);
        return new SigningCredentials(new RsaSecurityKey(rsa) { KeyId = row.Id, CryptoProviderFactory = new RememberingCryptoProviderFactory() },
            SecurityAlgorithms.RsaSha256);
    }

    private SigningCredentials? LoadSigningCertificate()
    {
        var certificate = CertificateFiles.Load(options.Value.SigningCertificate, "Keys:SigningCertificate");
        if (certificate is null)
        {
            return null;
        }

        logger.LogInformation(KeyEvents.CertificateLoaded, "Signing with certificate {Thumbprint}", certificate.Thumbprint);
        return new SigningCredentials(new X509SecurityKey(certificate) { CryptoProviderFactory = new RememberingCryptoProviderFactory() },
            SecurityAlgorithms.RsaSha256);
    }

    private async Task<IReadOnlyList<EncryptingCredentials>> LoadEncryptionAsync(ApplicationDbContext db, IDataProtector protector, CancellationToken ct)
    {
        var certificate = CertificateFiles.Load(options.Value.EncryptionCertificate, "Keys:EncryptionCertificate");
        if (certificate is not null)
        {
            return [new EncryptingCredentials(new X509SecurityKey(certificate), SecurityAlgorithms.RsaOAEP, SecurityAlgorithms.Aes256CbcHmacSha512)];
        }

        // Encryption keys never leave the server (codes and refresh tokens are read only by us), so a
        // symmetric key does the job and costs far less than RSA per token.
        var stored = await GetOrCreateSymmetricAsync(db, protector, StoredKey.EncryptionUse, SecurityAlgorithms.Aes256KW, ct);
        var key = new SymmetricSecurityKey(Convert.FromBase64String(Unprotect(protector, stored.Id, stored.ProtectedKey)))
        {
            KeyId = stored.Id,
            CryptoProviderFactory = new ReusingCryptoProviderFactory(),
        };
        return [new EncryptingCredentials(key, SecurityAlgorithms.Aes256KW, SecurityAlgorithms.Aes256CbcHmacSha512)];
    }

    /// <summary>
    /// Codes, refresh tokens and device codes are read only by this server (and are encrypted as well), so they are
    /// signed with HMAC-SHA256 under a 256-bit key of ours rather than with the published asymmetric key: a fraction
    /// of the cost, and they never depend on a key that rotates out of the JWKS.
    /// </summary>
    private async Task<SigningCredentials> LoadInternalKeyAsync(ApplicationDbContext db, IDataProtector protector, CancellationToken ct)
    {
        var stored = await GetOrCreateSymmetricAsync(db, protector, StoredKey.InternalSigningUse, SecurityAlgorithms.HmacSha256, ct);
        var key = new SymmetricSecurityKey(Convert.FromBase64String(Unprotect(protector, stored.Id, stored.ProtectedKey))) { KeyId = stored.Id };
        return new SigningCredentials(key, SecurityAlgorithms.HmacSha256);
    }

    private async Task<StoredKey> GetOrCreateSymmetricAsync(ApplicationDbContext db, IDataProtector protector, string use, string algorithm, CancellationToken ct)
    {
        var existing = await db.StoredKeys.AsNoTracking().Where(k => k.Use == use).OrderByDescending(k => k.Slot).FirstOrDefaultAsync(ct);
        if (existing is not null)
        {
            return existing;
        }

        var key = new StoredKey
        {
            Id = NewKeyId(),
            Use = use,
            Algorithm = algorithm,
            Slot = 0,
            ProtectedKey = protector.Protect(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32))),
            CreatedAt = clock.GetUtcNow(),
        };
        db.StoredKeys.Add(key);
        try
        {
            await db.SaveChangesAsync(ct);
            logger.LogInformation(KeyEvents.KeyCreated, "Created {Use} key {KeyId} ({Algorithm})", use, key.Id, algorithm);
            return key;
        }
        catch (DbUpdateException)
        {
            // Another instance created the key for this slot at the same moment: use theirs.
            db.ChangeTracker.Clear();
            return await db.StoredKeys.AsNoTracking().Where(k => k.Use == use).OrderByDescending(k => k.Slot).FirstOrDefaultAsync(ct)
                ?? throw new InvalidOperationException($"Could not create or read the {use} key.");
        }
    }

    /// <summary>
    /// A stored key's private part. One this server cannot read stops the start with the likely cause: its Data
    /// Protection key is gone, revoked, or encrypted with a certificate this server was not given.
    /// </summary>
    internal static string Unprotect(IDataProtector protector, string keyId, string protectedKey)
    {
        try
        {
            return protector.Unprotect(protectedKey);
        }
        catch (CryptographicException e)
        {
            var dataProtectionKey = KeyRingProtection.ProtectingKeyId(protectedKey, $"stored key {keyId}");
            throw new StartupConfigurationException(
                $"cannot read stored key {keyId}: Data Protection key {dataProtectionKey}, which protects it, is missing, revoked or encrypted with a " +
                $"certificate this server was not given (Keys:KeyRingCertificate; Keys:PreviousKeyRingCertificates for a replaced one): " +
                e.GetBaseException().Message, e);
        }
    }

    private static string NewKeyId() => Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16));

    private static byte[] CreateRsaKey()
    {
        using var rsa = RSA.Create(2048);
        return rsa.ExportPkcs8PrivateKey();
    }

    private static byte[] CreateEcdsaKey()
    {
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return ecdsa.ExportPkcs8PrivateKey();
    }

    private sealed record LoadedKey(StoredKey Row, SigningCredentials Credentials, DateTimeOffset ActivatesAt, DateTimeOffset? RetiresAt);

    private sealed record Snapshot(
        IReadOnlyList<LoadedKey> Signing,
        SigningCredentials? Certificate,
        SigningCredentials Internal,
        IReadOnlyList<EncryptingCredentials> Encryption,
        IReadOnlyList<SecurityKey> ValidationKeys);
}

/// <summary>A signing key as operators see it: <c>next</c> (published, not yet signing), <c>active</c> or <c>retired</c>.</summary>
public sealed record SigningKeyState(
    string KeyId,
    string Algorithm,
    int Slot,
    string State,
    DateTimeOffset? CreatedAt,
    DateTimeOffset? ActivatesAt,
    DateTimeOffset? RetiresAt,
    DateTimeOffset? PublishedUntil);

public static class KeyEvents
{
    public static readonly EventId KeyCreated = new(3001, nameof(KeyCreated));
    public static readonly EventId CertificateLoaded = new(3002, nameof(CertificateLoaded));
    public static readonly EventId KeyRemoved = new(3003, nameof(KeyRemoved));
    public static readonly EventId RotatedNow = new(3004, nameof(RotatedNow));
    public static readonly EventId RefreshFailed = new(3005, nameof(RefreshFailed));
    public static readonly EventId KeyRingUnencrypted = new(3006, nameof(KeyRingUnencrypted));
    public static readonly EventId KeyRingEncrypted = new(3007, nameof(KeyRingEncrypted));
    public static readonly EventId StoredKeysReprotected = new(3008, nameof(StoredKeysReprotected));
}
