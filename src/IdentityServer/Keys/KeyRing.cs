using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using IdentityServer.Authorization;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Keys;

/// <summary>
/// The keys the server signs and encrypts tokens with. Certificates when configured; otherwise keys generated and
/// stored in the database, where the signing key rotates by itself: a new key is created and published
/// <see cref="KeysOptions.PublishAhead"/> before it starts signing, signs for <see cref="KeysOptions.RotationPeriod"/>,
/// and stays published after it retires for the longest access or id token lifetime plus
/// <see cref="KeysOptions.RetirementMargin"/>. The internal keys (the HMAC key of codes and refresh tokens, and their
/// encryption key unless a certificate is configured) rotate on the same schedule: stored at least as far ahead (and
/// never less than five checks), so every instance holds a new key before any uses it, and kept until every token
/// they protected has expired. A token naming a key this instance has not loaded yet reloads the keys at once.
/// Every instance reads the same rows and derives the same active keys from their activation times; a unique
/// (use, slot) index makes sure racing instances create one key per slot.
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

    /// <summary>However many tokens name an unknown key, the keys are reloaded for them at most this often.</summary>
    private static readonly TimeSpan UnknownKeyReloadInterval = TimeSpan.FromSeconds(5);

    private readonly SemaphoreSlim _refresh = new(1, 1);
    private readonly Lock _unknownKeyReloadGate = new();
    private Task _unknownKeyReload = Task.CompletedTask;
    private long _unknownKeyReloadStarted;

    /// <summary>Credentials already read from stored keys, by key id (reading one means unprotecting and importing it).</summary>
    private readonly Dictionary<string, object> _parsed = new(StringComparer.Ordinal);
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
        foreach (var key in snapshot.Signing.Concat(snapshot.IdentitySigning))
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

    /// <summary>The encryption credentials at start (what OpenIddict's own configuration checks).</summary>
    public IReadOnlyList<EncryptingCredentials> EncryptionCredentials => [ActiveEncryptionCredentials];

    /// <summary>What signs access and id tokens now: the latest key whose activation time has come.</summary>
    public SigningCredentials ActiveSigningCredentials => Current.Certificate ?? ActiveOf(Current.Signing);

    /// <summary>
    /// What signs identity and logout tokens now: the active signing key when it is RSA (always, unless
    /// <c>Keys:Algorithm</c> is ES256), otherwise the active key of the RSA identity keys (<see cref="StoredKey.IdentitySigningUse"/>)
    /// once the first of them has started signing (on a server that was on ES256 before there were identity keys, it is
    /// published ahead first, and the active signing key signs them until then).
    /// OpenID Connect requires RS256 of every provider, and a client that registered no other algorithm expects it.
    /// </summary>
    public SigningCredentials IdentitySigningCredentials
    {
        get
        {
            var active = ActiveSigningCredentials;
            var identity = Current.IdentitySigning;
            return active.Algorithm == SecurityAlgorithms.RsaSha256 || identity.Count == 0 || identity[0].ActivatesAt > clock.GetUtcNow()
                ? active
                : ActiveOf(identity);
        }
    }

    /// <summary>
    /// The algorithms identity tokens are signed with (discovery's <c>id_token_signing_alg_values_supported</c>): those of
    /// the published keys, but RS256 only while there are RSA identity keys and identity tokens are RSA-signed now (the
    /// others then sign access tokens only).
    /// </summary>
    public IReadOnlyList<string> IdentityTokenAlgorithms()
    {
        var algorithms = Published().Select(k => k.Algorithm).Distinct(StringComparer.Ordinal);
        return Current.IdentitySigning.Count == 0 || IdentitySigningCredentials.Algorithm != SecurityAlgorithms.RsaSha256
            ? [.. algorithms]
            : [.. algorithms.Where(a => a == SecurityAlgorithms.RsaSha256)];
    }

    /// <summary>What signs the tokens only this server reads (codes, refresh tokens, device and user codes) now: HMAC-SHA256.</summary>
    public SigningCredentials InternalSigningCredentials => ActiveOf(Current.Internal);

    /// <summary>What encrypts the tokens only this server reads now: the configured certificate, or the active stored key.</summary>
    public EncryptingCredentials ActiveEncryptionCredentials => Current.EncryptionCertificate ?? ActiveOf(Current.Encryption);

    /// <summary>Every key a token of ours may be signed with: all stored signing keys (published or not yet removed) and the internal keys.</summary>
    public IReadOnlyList<SecurityKey> ValidationKeys => Current.ValidationKeys;

    /// <summary>Every key a token of ours may be encrypted with: the certificate if configured, and every stored encryption key not yet removed.</summary>
    public IReadOnlyList<SecurityKey> DecryptionKeys => Current.DecryptionKeys;

    /// <summary>Whether <paramref name="keyId"/> names a key this instance has loaded.</summary>
    public bool Knows(string keyId) => Current.KeyIds.Contains(keyId);

    /// <summary>
    /// A token names a key this instance has not loaded: another instance may have just created it (rotate-now signs
    /// with a new key at once, and this instance would otherwise learn of it only at its next check). Reloads the keys,
    /// at most once every <see cref="UnknownKeyReloadInterval"/> however many such tokens arrive, so made-up key ids do
    /// not turn into database load; requests arriving during a reload wait for it. A reload that fails is logged and
    /// the token is then judged with the keys in memory.
    /// </summary>
    public Task LoadUnknownKeyAsync()
    {
        lock (_unknownKeyReloadGate)
        {
            if (_unknownKeyReload.IsCompleted && Stopwatch.GetElapsedTime(_unknownKeyReloadStarted) >= UnknownKeyReloadInterval)
            {
                _unknownKeyReloadStarted = Stopwatch.GetTimestamp();
                _unknownKeyReload = ReloadAsync();
            }

            return _unknownKeyReload;
        }

        async Task ReloadAsync()
        {
            // Off the lock: on SQLite the reload may otherwise run to its end synchronously while the lock is held.
            await Task.Yield();
            try
            {
                await RefreshAsync(CancellationToken.None);
            }
            catch (Exception e)
            {
                logger.LogWarning(KeyEvents.RefreshFailed, e, "Reloading the keys for a token naming an unknown key failed");
            }
        }
    }

    private T ActiveOf<T>(IReadOnlyList<LoadedKey<T>> keys)
    {
        var now = clock.GetUtcNow();
        var active = keys[0];
        foreach (var key in keys)
        {
            if (key.ActivatesAt <= now)
            {
                active = key;
            }
        }

        return active.Credentials;
    }

    /// <summary>The signing keys in the JWKS now: the next key, the active one, and retired ones until their tokens have expired.</summary>
    public IReadOnlyList<SigningCredentials> Published()
    {
        var snapshot = Current;
        if (snapshot.Certificate is { } certificate)
        {
            return [certificate];
        }

        var now = clock.GetUtcNow();
        return [.. snapshot.Signing.Concat(snapshot.IdentitySigning)
            .Where(k => k.RetiresAt is null || k.RetiresAt + PublishedAfterRetirement > now).Select(k => k.Credentials)];
    }

    /// <summary>Every stored signing key with its state now, for operators.</summary>
    public IReadOnlyList<SigningKeyState> Describe()
    {
        var snapshot = Current;
        if (snapshot.Certificate is { } certificate)
        {
            return [new SigningKeyState(certificate.Kid ?? "", certificate.Algorithm, 0, "active", null, null, null, null)];
        }

        var active = ActiveSigningCredentials;
        var identityActive = snapshot.IdentitySigning.Count > 0 ? ActiveOf(snapshot.IdentitySigning) : null;
        return [.. snapshot.Signing.Select(k => StateOfSigning(k, active)), .. snapshot.IdentitySigning.Select(k => StateOfSigning(k, identityActive!))];

        SigningKeyState StateOfSigning(LoadedKey<SigningCredentials> key, SigningCredentials activeOfItsUse) => new(key.Row.Id, key.Row.Algorithm,
            key.Row.Slot, StateOf(key, activeOfItsUse), key.Row.CreatedAt, key.ActivatesAt, key.RetiresAt, key.RetiresAt + PublishedAfterRetirement, key.Row.Use);
    }

    /// <summary>
    /// Every stored internal key (HMAC and encryption) with its state now, for operators. With an encryption
    /// certificate, stored encryption keys are retired: they only decrypt what they encrypted before it.
    /// </summary>
    public IReadOnlyList<InternalKeyState> DescribeInternal()
    {
        var snapshot = Current;
        var (activeHmac, activeEncryption) = (InternalSigningCredentials, ActiveEncryptionCredentials);
        return [.. snapshot.Internal.Select(k => StateOfInternal(k, activeHmac)), .. snapshot.Encryption.Select(k => StateOfInternal(k, activeEncryption))];

        InternalKeyState StateOfInternal<T>(LoadedKey<T> key, T active) => new(key.Row.Id, key.Row.Use, key.Row.Algorithm, key.Row.Slot,
            StateOf(key, active), key.Row.CreatedAt, key.ActivatesAt, key.RetiresAt, key.RetiresAt + KeptAfterRetirement);
    }

    private string StateOf<T>(LoadedKey<T> key, T active) =>
        key.ActivatesAt > clock.GetUtcNow() ? "next" : ReferenceEquals(key.Credentials, active) ? "active" : "retired";

    /// <summary>Retired keys stay published for the longest lifetime of what they signed (access and id tokens) plus the margin.</summary>
    private TimeSpan PublishedAfterRetirement =>
        (tokens.Value.AccessTokenLifetime > tokens.Value.IdentityTokenLifetime ? tokens.Value.AccessTokenLifetime : tokens.Value.IdentityTokenLifetime)
        + options.Value.RetirementMargin;

    /// <summary>Retired keys are deleted once nothing they may have signed or encrypted (refresh tokens included) can still be presented.</summary>
    private TimeSpan KeptAfterRetirement =>
        new[]
        {
            tokens.Value.AccessTokenLifetime, tokens.Value.IdentityTokenLifetime, tokens.Value.RefreshTokenLifetime,
            tokens.Value.AuthorizationCodeLifetime, tokens.Value.DeviceCodeLifetime,
        }.Max() + options.Value.RetirementMargin;

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
    /// is one (it is already published), otherwise a new key. Tokens signed by the previous key stay valid while it is
    /// published. The internal keys rotate too, <see cref="InternalKeyLead"/> from now rather than at once.
    /// </summary>
    public Task<SigningKeyState> RotateNowAsync(CancellationToken cancellationToken) => RotateNowAsync(commit: null, cancellationToken);

    /// <inheritdoc cref="RotateNowAsync(CancellationToken)"/>
    /// <param name="commit">
    /// Commits the rotation's transaction with what is written along with it (its audit entries), so that both are
    /// stored or neither: given the services of the rotation's scope (whose database context the transaction is on), the
    /// rows of the keys that sign from now on (the signing key, then the RSA identity key if there are such keys), and
    /// the transaction. Without it the rotation commits alone.
    /// </param>
    public async Task<SigningKeyState> RotateNowAsync(Func<IServiceProvider, IReadOnlyList<StoredKey>, IDbContextTransaction, Task>? commit,
        CancellationToken cancellationToken)
    {
        if (!Rotates)
        {
            throw new InvalidOperationException("The signing key is a configured certificate; replace the certificate to rotate it.");
        }

        // The new keys are made before the transaction, which on SQLite holds the database's one write lock from its
        // start (every token written waits for it): an RSA key takes tens to hundreds of milliseconds to generate.
        // Those not needed (a next key already waiting, or another instance's key in the slot) are dropped.
        var signingKey = NewKeyMaterial(StoredKey.SigningUse);
        var hmacKey = NewKeyMaterial(StoredKey.InternalSigningUse);
        var encryptionKey = Current.EncryptionCertificate is null ? NewKeyMaterial(StoredKey.EncryptionUse) : null;
        var identityKey = Current.IdentitySigning.Count > 0 ? NewKeyMaterial(StoredKey.IdentitySigningUse) : null;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        await _refresh.WaitAsync(cancellationToken);
        try
        {
            var now = clock.GetUtcNow();
            var internalFrom = now + InternalKeyLead;
            DateTimeOffset internalAt;
            // One transaction with what the caller writes along (an audit entry). A key that loses the race for its slot
            // rolls back to the savepoint EF Core made for that save, not the whole transaction.
            await using (var transaction = await db.Database.BeginTransactionAsync(cancellationToken))
            {
                await BringRotationForwardAsync(db, signingKey, now, cancellationToken);
                if (identityKey is not null)
                {
                    await BringRotationForwardAsync(db, identityKey, now, cancellationToken);
                }

                // An earlier rotate-now may have scheduled them sooner: the log says when they actually switch.
                internalAt = await BringRotationForwardAsync(db, hmacKey, internalFrom, cancellationToken);
                if (encryptionKey is not null)
                {
                    var encryptionAt = await BringRotationForwardAsync(db, encryptionKey, internalFrom, cancellationToken);
                    internalAt = encryptionAt > internalAt ? encryptionAt : internalAt;
                }

                if (commit is null)
                {
                    await transaction.CommitAsync(cancellationToken);
                }
                else
                {
                    List<StoredKey> signingNow = [(await RowsAsync(db, StoredKey.SigningUse, cancellationToken))[^1]];
                    if (identityKey is not null)
                    {
                        signingNow.Add((await RowsAsync(db, StoredKey.IdentitySigningUse, cancellationToken))[^1]);
                    }

                    await commit(scope.ServiceProvider, signingNow, transaction);
                }
            }

            logger.LogWarning(KeyEvents.RotatedNow, "Signing key rotated now by an operator; internal keys rotate by {InternalAt:O}", internalAt);
            db.ChangeTracker.Clear();
            await LoadCoreAsync(db, cancellationToken);
            return Describe().Single(k => k.State == "active" && k.Use == StoredKey.SigningUse);
        }
        finally
        {
            _refresh.Release();
        }
    }

    /// <summary>
    /// The least time between storing an internal key and using it: five key checks, so that every instance has loaded
    /// it before any instance issues a code or refresh token with it, even if one of its checks failed or ran late.
    /// </summary>
    private TimeSpan InternalKeyLead => 5 * options.Value.CheckInterval;

    /// <summary>
    /// Makes the next key of <paramref name="fresh"/>'s use take over at <paramref name="activatesAt"/>: the waiting one
    /// if there is one (sooner), otherwise <paramref name="fresh"/>, stored as a new one.
    /// </summary>
    /// <returns>When the use's newest key starts being used: <paramref name="activatesAt"/>, or sooner if it was already due sooner.</returns>
    private async Task<DateTimeOffset> BringRotationForwardAsync(ApplicationDbContext db, KeyMaterial fresh, DateTimeOffset activatesAt, CancellationToken cancellationToken)
    {
        var use = fresh.Use;
        var latest = (await RowsAsync(db, use, cancellationToken))[^1];
        if (ActivationOf(latest) <= clock.GetUtcNow())
        {
            if (await CreateKeyAsync(db, fresh, latest.Slot + 1, activatesAt, cancellationToken))
            {
                return activatesAt;
            }

            // Another instance's scheduled rotation created the next key at the same moment: bring that one forward.
            latest = (await RowsAsync(db, use, cancellationToken))[^1];
        }

        if (ActivationOf(latest) > activatesAt)
        {
            var tracked = await db.StoredKeys.SingleAsync(k => k.Id == latest.Id, cancellationToken);
            tracked.ActivatesAt = activatesAt;
            await db.SaveChangesAsync(cancellationToken);
            return activatesAt;
        }

        return ActivationOf(latest);
    }

    private async Task LoadCoreAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        var protector = dataProtection.CreateProtector(ProtectorPurpose);
        var certificate = _snapshot?.Certificate ?? LoadSigningCertificate();
        var encryptionCertificate = _snapshot?.EncryptionCertificate ?? LoadEncryptionCertificate();

        var signing = certificate is null ? await LoadStoredAsync(db, StoredKey.SigningUse, row => ParseSigning(row, protector), cancellationToken) : [];
        // RSA identity keys while the signing keys are not RSA, and (rotating on) once there are any, so that switching
        // back to RS256 leaves no identity key signing past its period.
        var identity = certificate is null && (options.Value.Algorithm != SecurityAlgorithms.RsaSha256
                || await db.StoredKeys.AnyAsync(k => k.Use == StoredKey.IdentitySigningUse, cancellationToken))
            ? await LoadStoredAsync(db, StoredKey.IdentitySigningUse, row => ParseSigning(row, protector), cancellationToken,
                firstFrom: FirstIdentityKeyFrom(signing))
            : [];
        var hmac = await LoadStoredAsync(db, StoredKey.InternalSigningUse, row => ParseHmac(row, protector), cancellationToken);
        // With an encryption certificate, stored encryption keys only decrypt what they encrypted before it was configured.
        var encryption = await LoadStoredAsync(db, StoredKey.EncryptionUse, row => ParseEncryption(row, protector), cancellationToken,
            rotate: encryptionCertificate is null);

        var validation = new List<SecurityKey>(hmac.Select(k => k.Credentials.Key));
        validation.AddRange(certificate is not null ? [certificate.Key] : signing.Concat(identity).Select(k => k.Credentials.Key));
        List<SecurityKey> decryption = [.. encryption.Select(k => k.Credentials.Key)];
        if (encryptionCertificate is not null)
        {
            decryption.Insert(0, encryptionCertificate.Key);
        }

        // A stored key's key id is its row's id: what is parsed but no longer loaded was deleted.
        var keyIds = validation.Concat(decryption).Select(k => k.KeyId).OfType<string>().ToHashSet(StringComparer.Ordinal);
        foreach (var gone in _parsed.Keys.Where(id => !keyIds.Contains(id)).ToList())
        {
            _parsed.Remove(gone);
        }

        var previous = _snapshot;
        _snapshot = new Snapshot(signing, identity, certificate, hmac, encryption, encryptionCertificate, validation, decryption, keyIds);
        if (previous is not null && !previous.Signing.Concat(previous.IdentitySigning).Select(k => (k.Row.Id, k.ActivatesAt))
                .SequenceEqual(signing.Concat(identity).Select(k => (k.Row.Id, k.ActivatesAt))))
        {
            Interlocked.Increment(ref _version);
            Changed?.Invoke();
        }
    }

    /// <summary>
    /// When the first identity key starts signing: at once on a new server (its first signing key less than a key check
    /// old, racing instances included), where no relying party can have cached a JWKS without it; otherwise, as every
    /// signing key, <see cref="KeysOptions.PublishAhead"/> from now. A server on ES256 from before the identity keys
    /// would otherwise sign identity tokens at once with a key the JWKS copies relying parties cached do not hold.
    /// </summary>
    private DateTimeOffset FirstIdentityKeyFrom(IReadOnlyList<LoadedKey<SigningCredentials>> signing)
    {
        var now = clock.GetUtcNow();
        return signing.Count == 0 || signing.Min(k => k.Row.CreatedAt) > now - options.Value.CheckInterval ? now : now + options.Value.PublishAhead;
    }

    /// <summary>
    /// The stored keys of one use, rotated if due (unless <paramref name="rotate"/> is false), each with when it
    /// activates and retires. The first key of the use, if there is none, is used from <paramref name="firstFrom"/> (now by default).
    /// </summary>
    private async Task<IReadOnlyList<LoadedKey<T>>> LoadStoredAsync<T>(ApplicationDbContext db, string use, Func<StoredKey, T> parse,
        CancellationToken cancellationToken, bool rotate = true, DateTimeOffset? firstFrom = null) where T : class
    {
        var rows = rotate ? await RotateIfDueAsync(db, use, firstFrom, cancellationToken) : await RowsAsync(db, use, cancellationToken);
        var loaded = new List<LoadedKey<T>>(rows.Count);
        for (var i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            if (!_parsed.TryGetValue(row.Id, out var credentials))
            {
                credentials = _parsed[row.Id] = parse(row);
            }

            loaded.Add(new LoadedKey<T>(row, (T)credentials, ActivationOf(row), i + 1 < rows.Count ? ActivationOf(rows[i + 1]) : null));
        }

        return loaded;
    }

    /// <summary>Creates the first key, or the next one when the active key's rotation is due; deletes keys nothing can use any more.</summary>
    private async Task<List<StoredKey>> RotateIfDueAsync(ApplicationDbContext db, string use, DateTimeOffset? firstFrom, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var keys = await RowsAsync(db, use, cancellationToken);
        if (keys.Count == 0)
        {
            // First start: nothing can have been published ahead, so the first key is used at once (unless told otherwise).
            await CreateKeyAsync(db, NewKeyMaterial(use), 0, firstFrom ?? now, cancellationToken);
            return await RowsAsync(db, use, cancellationToken);
        }

        var latest = keys[^1];
        var activation = ActivationOf(latest);
        if (activation <= now && now >= NextKeyDue(activation, use))
        {
            // Never sooner than the lead from now: relying parties must have had the chance to fetch a signing key, and
            // every instance to load an internal one.
            var next = activation + options.Value.RotationPeriod;
            var lead = LeadOf(use);
            await CreateKeyAsync(db, NewKeyMaterial(use), latest.Slot + 1, next > now + lead ? next : now + lead, cancellationToken);
            keys = await RowsAsync(db, use, cancellationToken);
        }

        var expired = keys.Where((k, i) => i + 1 < keys.Count && ActivationOf(keys[i + 1]) + KeptAfterRetirement <= now).ToList();
        if (expired.Count > 0)
        {
            await db.StoredKeys.Where(k => k.Use == use && expired.Select(e => e.Id).Contains(k.Id)).ExecuteDeleteAsync(cancellationToken);
            logger.LogInformation(KeyEvents.KeyRemoved, "Removed {Count} retired {Use} key(s): {KeyIds}", expired.Count, use, expired.Select(e => e.Id));
            keys = await RowsAsync(db, use, cancellationToken);
        }

        return keys;
    }

    /// <summary>When the key after one activated at <paramref name="activation"/> is to be stored: its lead before that key's period ends.</summary>
    private DateTimeOffset NextKeyDue(DateTimeOffset activation, string use) => activation + options.Value.RotationPeriod - LeadOf(use);

    /// <summary>How long before it is used a new key is stored: published ahead (signing), and for internal keys never less than five checks.</summary>
    private TimeSpan LeadOf(string use) =>
        use is StoredKey.SigningUse or StoredKey.IdentitySigningUse || options.Value.PublishAhead > InternalKeyLead ? options.Value.PublishAhead : InternalKeyLead;

    /// <summary>
    /// For each use whose stored keys rotate (<c>sig</c> unless a signing certificate is configured, <c>mac</c>, and
    /// <c>enc</c> unless an encryption certificate is), how late the next key is by the keys this instance last loaded:
    /// zero until one <see cref="KeysOptions.CheckInterval"/> after it was due (the check that stores it runs within
    /// that), then growing until one is loaded. A stalled rotation (the key check failing, event 3005) breaks nothing
    /// at once, as the active key goes on being used, so this is what shows it.
    /// </summary>
    public IReadOnlyList<(string Use, TimeSpan Overdue)> RotationOverdue()
    {
        if (_snapshot is not { } snapshot)
        {
            return [];
        }

        var now = clock.GetUtcNow();
        List<(string, TimeSpan)> overdue = [(StoredKey.InternalSigningUse, OverdueOf(snapshot.Internal, StoredKey.InternalSigningUse))];
        if (snapshot.Certificate is null)
        {
            overdue.Add((StoredKey.SigningUse, OverdueOf(snapshot.Signing, StoredKey.SigningUse)));
            if (snapshot.IdentitySigning.Count > 0)
            {
                overdue.Add((StoredKey.IdentitySigningUse, OverdueOf(snapshot.IdentitySigning, StoredKey.IdentitySigningUse)));
            }
        }

        if (snapshot.EncryptionCertificate is null)
        {
            overdue.Add((StoredKey.EncryptionUse, OverdueOf(snapshot.Encryption, StoredKey.EncryptionUse)));
        }

        return overdue;

        TimeSpan OverdueOf<T>(IReadOnlyList<LoadedKey<T>> keys, string use) =>
            keys.Count > 0 && NextKeyDue(keys[^1].ActivatesAt, use) + options.Value.CheckInterval is var late && now > late ? now - late : TimeSpan.Zero;
    }

    /// <summary>
    /// A new key of <paramref name="use"/>, generated and protected, not yet stored: made before any transaction or
    /// lock that decides its slot is taken, since an RSA key takes tens to hundreds of milliseconds to generate.
    /// </summary>
    private KeyMaterial NewKeyMaterial(string use)
    {
        var (algorithm, material) = use switch
        {
            StoredKey.SigningUse when options.Value.Algorithm == SecurityAlgorithms.EcdsaSha256 => (SecurityAlgorithms.EcdsaSha256, CreateEcdsaKey()),
            StoredKey.SigningUse or StoredKey.IdentitySigningUse => (SecurityAlgorithms.RsaSha256, CreateRsaKey()),
            StoredKey.InternalSigningUse => (SecurityAlgorithms.HmacSha256, RandomNumberGenerator.GetBytes(32)),
            StoredKey.EncryptionUse => (SecurityAlgorithms.Aes256KW, RandomNumberGenerator.GetBytes(32)),
            _ => throw new ArgumentOutOfRangeException(nameof(use), use, "Not a stored key use."),
        };
        return new KeyMaterial(use, algorithm, dataProtection.CreateProtector(ProtectorPurpose).Protect(Convert.ToBase64String(material)));
    }

    /// <summary>Stores <paramref name="fresh"/> as the key of a slot; false when another instance stored one for that slot first (theirs is the one).</summary>
    private async Task<bool> CreateKeyAsync(ApplicationDbContext db, KeyMaterial fresh, int slot, DateTimeOffset activatesAt, CancellationToken cancellationToken)
    {
        var (use, algorithm) = (fresh.Use, fresh.Algorithm);
        var key = new StoredKey
        {
            Id = NewKeyId(),
            Use = use,
            Algorithm = algorithm,
            Slot = slot,
            ProtectedKey = fresh.ProtectedKey,
            CreatedAt = clock.GetUtcNow(),
            ActivatesAt = activatesAt,
        };
        db.StoredKeys.Add(key);
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            logger.LogInformation(KeyEvents.KeyCreated, "Created {Use} key {KeyId} ({Algorithm}, slot {Slot}), in use from {ActivatesAt:O}",
                use, key.Id, algorithm, slot, activatesAt);
            return true;
        }
        catch (DbUpdateException)
        {
            db.ChangeTracker.Clear();
            return false;
        }
    }

    private static Task<List<StoredKey>> RowsAsync(ApplicationDbContext db, string use, CancellationToken ct) =>
        db.StoredKeys.AsNoTracking().Where(k => k.Use == use).OrderBy(k => k.Slot).ToListAsync(ct);

    private static DateTimeOffset ActivationOf(StoredKey key) => key.ActivatesAt ?? key.CreatedAt;

    private static SigningCredentials ParseSigning(StoredKey row, IDataProtector protector)
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

    /// <summary>
    /// Codes, refresh tokens and device codes are read only by this server (and are encrypted as well), so they are
    /// signed with HMAC-SHA256 under a 256-bit key of ours rather than with the published asymmetric key: a fraction
    /// of the cost, and they never depend on a key that rotates out of the JWKS.
    /// </summary>
    private static SigningCredentials ParseHmac(StoredKey row, IDataProtector protector) =>
        new(new SymmetricSecurityKey(Convert.FromBase64String(Unprotect(protector, row.Id, row.ProtectedKey))) { KeyId = row.Id },
            SecurityAlgorithms.HmacSha256);

    /// <summary>
    /// Encryption keys never leave the server (codes and refresh tokens are read only by us), so a symmetric key does
    /// the job and costs far less than RSA per token.
    /// </summary>
    private static EncryptingCredentials ParseEncryption(StoredKey row, IDataProtector protector)
    {
        var key = new SymmetricSecurityKey(Convert.FromBase64String(Unprotect(protector, row.Id, row.ProtectedKey)))
        {
            KeyId = row.Id,
            CryptoProviderFactory = new ReusingCryptoProviderFactory(),
        };
        return new EncryptingCredentials(key, SecurityAlgorithms.Aes256KW, SecurityAlgorithms.Aes256CbcHmacSha512);
    }

    private SigningCredentials? LoadSigningCertificate()
    {
        // It signs every token RS256 (identity tokens must be) and the JWKS publishes its RSA key: another kind of key
        // would leave an empty JWKS and every token request failing.
        if (LoadRsaCertificate(options.Value.SigningCertificate, "Keys:SigningCertificate") is not { } certificate)
        {
            return null;
        }

        logger.LogInformation(KeyEvents.CertificateLoaded, "Signing with certificate {Thumbprint}", certificate.Thumbprint);
        return new SigningCredentials(new X509SecurityKey(certificate) { CryptoProviderFactory = new RememberingCryptoProviderFactory() },
            SecurityAlgorithms.RsaSha256);
    }

    // Codes and refresh tokens are encrypted to it with RSA-OAEP: another kind of key would fail every one of them.
    private EncryptingCredentials? LoadEncryptionCertificate() =>
        LoadRsaCertificate(options.Value.EncryptionCertificate, "Keys:EncryptionCertificate") is { } certificate
            ? new EncryptingCredentials(new X509SecurityKey(certificate), SecurityAlgorithms.RsaOAEP, SecurityAlgorithms.Aes256CbcHmacSha512)
            : null;

    /// <summary>The configured certificate of <paramref name="setting"/>, if any; one without an RSA key stops the start.</summary>
    private static X509Certificate2? LoadRsaCertificate(CertificateOptions? configured, string setting)
    {
        var certificate = CertificateFiles.Load(configured, setting);
        if (certificate is not null)
        {
            using var rsa = certificate.GetRSAPublicKey();
            if (rsa is null)
            {
                throw new StartupConfigurationException($"{setting}: '{certificate.Subject}' is not an RSA certificate.");
            }
        }

        return certificate;
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

    /// <summary>A new key's private part, protected, with its use and algorithm: what <see cref="CreateKeyAsync"/> stores.</summary>
    private sealed record KeyMaterial(string Use, string Algorithm, string ProtectedKey);

    /// <summary>A stored key read, with when it starts being used and when the next key of its use replaces it.</summary>
    private sealed record LoadedKey<T>(StoredKey Row, T Credentials, DateTimeOffset ActivatesAt, DateTimeOffset? RetiresAt);

    private sealed record Snapshot(
        IReadOnlyList<LoadedKey<SigningCredentials>> Signing,
        IReadOnlyList<LoadedKey<SigningCredentials>> IdentitySigning,
        SigningCredentials? Certificate,
        IReadOnlyList<LoadedKey<SigningCredentials>> Internal,
        IReadOnlyList<LoadedKey<EncryptingCredentials>> Encryption,
        EncryptingCredentials? EncryptionCertificate,
        IReadOnlyList<SecurityKey> ValidationKeys,
        IReadOnlyList<SecurityKey> DecryptionKeys,
        IReadOnlySet<string> KeyIds);
}

/// <summary>
/// An internal key as operators see it: the HMAC key (<c>mac</c>) or encryption key (<c>enc</c>) of the tokens only
/// this server reads, <c>next</c>, <c>active</c> or <c>retired</c>, and when it is deleted.
/// </summary>
public sealed record InternalKeyState(
    string KeyId,
    string Use,
    string Algorithm,
    int Slot,
    string State,
    DateTimeOffset CreatedAt,
    DateTimeOffset ActivatesAt,
    DateTimeOffset? RetiresAt,
    DateTimeOffset? DeletedAfter);

/// <summary>
/// A signing key as operators see it: <c>next</c> (published, not yet signing), <c>active</c> or <c>retired</c> among the
/// keys of its use (<c>sig</c>, or <c>id-sig</c> for the RSA keys of identity tokens while the others are not RSA).
/// </summary>
public sealed record SigningKeyState(
    string KeyId,
    string Algorithm,
    int Slot,
    string State,
    DateTimeOffset? CreatedAt,
    DateTimeOffset? ActivatesAt,
    DateTimeOffset? RetiresAt,
    DateTimeOffset? PublishedUntil,
    string Use = StoredKey.SigningUse);

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
