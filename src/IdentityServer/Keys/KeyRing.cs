using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Keys;

/// <summary>
/// The keys the server signs and encrypts tokens with. Loaded once at start (by the database initializer) from
/// certificate files when configured, otherwise from the database, creating them on first start.
/// </summary>
public sealed class KeyRing(IOptions<KeysOptions> options, IDataProtectionProvider dataProtection, TimeProvider clock, ILogger<KeyRing> logger)
{
    private const string ProtectorPurpose = "IdentityServer.Keys.StoredKey.v1";

    private IReadOnlyList<SigningCredentials>? _signing;
    private IReadOnlyList<EncryptingCredentials>? _encryption;

    public IReadOnlyList<SigningCredentials> SigningCredentials =>
        _signing ?? throw new InvalidOperationException("The key ring is used before the database initializer loaded it.");

    public IReadOnlyList<EncryptingCredentials> EncryptionCredentials =>
        _encryption ?? throw new InvalidOperationException("The key ring is used before the database initializer loaded it.");

    public async Task LoadAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        var protector = dataProtection.CreateProtector(ProtectorPurpose);

        var signingCertificate = LoadCertificate(options.Value.SigningCertificate, "Keys:SigningCertificate");
        if (signingCertificate is not null)
        {
            _signing = [new SigningCredentials(new X509SecurityKey(signingCertificate), SecurityAlgorithms.RsaSha256)];
            logger.LogInformation(KeyEvents.CertificateLoaded, "Signing with certificate {Thumbprint}", signingCertificate.Thumbprint);
        }
        else
        {
            var stored = await GetOrCreateAsync(db, StoredKey.SigningUse, SecurityAlgorithms.RsaSha256, CreateRsaKey, cancellationToken);
            var rsa = RSA.Create();
            rsa.ImportPkcs8PrivateKey(Convert.FromBase64String(protector.Unprotect(stored.ProtectedKey)), out _);
            _signing = [new SigningCredentials(new RsaSecurityKey(rsa) { KeyId = stored.Id }, SecurityAlgorithms.RsaSha256)];
        }

        var encryptionCertificate = LoadCertificate(options.Value.EncryptionCertificate, "Keys:EncryptionCertificate");
        if (encryptionCertificate is not null)
        {
            _encryption = [new EncryptingCredentials(new X509SecurityKey(encryptionCertificate),
                SecurityAlgorithms.RsaOAEP, SecurityAlgorithms.Aes256CbcHmacSha512)];
        }
        else
        {
            // Encryption keys never leave the server (codes and refresh tokens are read only by us), so a
            // symmetric key does the job and costs far less than RSA per token.
            var stored = await GetOrCreateAsync(db, StoredKey.EncryptionUse, SecurityAlgorithms.Aes256KW, CreateSymmetricKey, cancellationToken);
            var key = new SymmetricSecurityKey(Convert.FromBase64String(protector.Unprotect(stored.ProtectedKey))) { KeyId = stored.Id };
            _encryption = [new EncryptingCredentials(key, SecurityAlgorithms.Aes256KW, SecurityAlgorithms.Aes256CbcHmacSha512)];
        }

        async Task<StoredKey> GetOrCreateAsync(ApplicationDbContext context, string use, string algorithm, Func<byte[]> create, CancellationToken ct)
        {
            var existing = await FindAsync(context, use, ct);
            if (existing is not null)
            {
                return existing;
            }

            var key = new StoredKey
            {
                Id = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16)),
                Use = use,
                Algorithm = algorithm,
                Slot = 0,
                ProtectedKey = protector.Protect(Convert.ToBase64String(create())),
                CreatedAt = clock.GetUtcNow(),
            };
            context.StoredKeys.Add(key);
            try
            {
                await context.SaveChangesAsync(ct);
                logger.LogInformation(KeyEvents.KeyCreated, "Created {Use} key {KeyId} ({Algorithm})", use, key.Id, algorithm);
                return key;
            }
            catch (DbUpdateException)
            {
                // Another instance created the key for this slot at the same moment: use theirs.
                context.ChangeTracker.Clear();
                return await FindAsync(context, use, ct)
                    ?? throw new InvalidOperationException($"Could not create or read the {use} key.");
            }
        }
    }

    private static Task<StoredKey?> FindAsync(ApplicationDbContext db, string use, CancellationToken ct) =>
        db.StoredKeys.AsNoTracking().Where(k => k.Use == use).OrderByDescending(k => k.Slot).FirstOrDefaultAsync(ct);

    private static byte[] CreateRsaKey()
    {
        using var rsa = RSA.Create(2048);
        return rsa.ExportPkcs8PrivateKey();
    }

    private static byte[] CreateSymmetricKey() => RandomNumberGenerator.GetBytes(32);

    private static X509Certificate2? LoadCertificate(CertificateOptions? certificate, string section)
    {
        if (string.IsNullOrWhiteSpace(certificate?.Path))
        {
            return null;
        }

        try
        {
            var loaded = string.IsNullOrWhiteSpace(certificate.KeyPath)
                ? X509CertificateLoader.LoadPkcs12FromFile(certificate.Path, certificate.Password)
                : X509Certificate2.CreateFromPemFile(certificate.Path, certificate.KeyPath);
            return loaded.HasPrivateKey
                ? loaded
                : throw new StartupConfigurationException($"{section}: '{certificate.Path}' has no private key.");
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new StartupConfigurationException($"{section}: cannot load '{certificate.Path}': {e.Message}", e);
        }
    }
}

public static class KeyEvents
{
    public static readonly EventId KeyCreated = new(3001, nameof(KeyCreated));
    public static readonly EventId CertificateLoaded = new(3002, nameof(CertificateLoaded));
}
