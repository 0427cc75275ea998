using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Xml;
using System.Xml.Linq;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Keys;

/// <summary>The certificate that encrypts Data Protection's keys where they are stored (<c>Keys:KeyRingCertificate</c>), if any.</summary>
public sealed record KeyRingCertificate(X509Certificate2? Certificate);

/// <summary>
/// Runs at start, before the stored keys are loaded. With <c>Keys:KeyRingCertificate</c> set, Data Protection encrypts
/// every key it creates with the certificate; but keys created before the setting (or under another certificate) stay
/// as they were stored, and whoever reads them from a copy of the database could forge login cookies and read the
/// stored signing keys. So at the first start with the certificate, every Data Protection key not encrypted with it is
/// revoked (a new, encrypted one takes over: sessions and open forms from before end), and every stored key protected
/// by such a key is protected again under the new one. Stored keys are all read first, so a key this server cannot
/// read stops the start with nothing changed.
/// </summary>
public sealed class KeyRingProtection(
    KeyRingCertificate keyRingCertificate,
    IDataProtectionProvider dataProtection,
    IKeyManager keyManager,
    IHostEnvironment environment,
    ILogger<KeyRingProtection> logger)
{
    /// <summary>What every Data Protection payload starts with, before the 16-byte id of the key that protected it.</summary>
    private const uint PayloadMagicHeader = 0x09F0C9F0;

    public async Task EnsureAsync(ApplicationDbContext db, CancellationToken cancellationToken)
    {
        if (keyRingCertificate.Certificate is not { } certificate)
        {
            if (!environment.IsDevelopment())
            {
                logger.LogWarning(KeyEvents.KeyRingUnencrypted,
                    "Keys:KeyRingCertificate is not set: Data Protection's keys are stored unencrypted in the database, beside the " +
                    "signing and encryption keys they protect, so whoever reads the database or a backup can read both.");
            }

            return;
        }

        var protector = dataProtection.CreateProtector(KeyRing.ProtectorPurpose);
        // First what Data Protection protects with now (on a new database this creates its first key, encrypted).
        var current = ProtectingKeyId(protector.Protect("probe"));
        var encrypted = await KeysEncryptedWithAsync(db, certificate, cancellationToken);
        var stale = (await db.StoredKeys.AsNoTracking().Select(k => new { k.Id, k.ProtectedKey }).ToListAsync(cancellationToken))
            .Where(row => !encrypted.Contains(ProtectingKeyId(row.ProtectedKey)))
            .Select(row => (row.Id, row.ProtectedKey, Material: KeyRing.Unprotect(protector, row.Id, row.ProtectedKey, evenIfRevoked: true)))
            .ToList();

        // Data Protection reads (and so would accept) whatever any key it holds protected, not only what its current key did.
        var revoked = keyManager.GetAllKeys().Where(key => !key.IsRevoked && !encrypted.Contains(key.KeyId)).Select(key => key.KeyId).ToList();
        if (revoked.Count > 0)
        {
            foreach (var keyId in revoked)
            {
                keyManager.RevokeKey(keyId, "Not encrypted with Keys:KeyRingCertificate");
            }

            current = await KeyTakingOverAsync(protector, revoked, cancellationToken);
            if (!(await KeysEncryptedWithAsync(db, certificate, cancellationToken)).Contains(current))
            {
                throw new InvalidOperationException($"Data Protection protects with key {current}, which is not encrypted with the key ring certificate.");
            }

            logger.LogWarning(KeyEvents.KeyRingEncrypted,
                "Revoked {Count} Data Protection key(s) not encrypted with the key ring certificate {Thumbprint}: {KeyIds}. Key {KeyId}, " +
                "encrypted with it, protects from now on; sessions and open forms from before have ended.",
                revoked.Count, certificate.Thumbprint, revoked, current);
        }

        var reprotected = 0;
        foreach (var (id, protectedKey, material) in stale)
        {
            var again = protector.Protect(material);
            // Only if no other instance starting at the same moment protected it again first.
            reprotected += await db.StoredKeys.Where(k => k.Id == id && k.ProtectedKey == protectedKey)
                .ExecuteUpdateAsync(setters => setters.SetProperty(k => k.ProtectedKey, again), cancellationToken);
        }

        if (reprotected > 0)
        {
            logger.LogInformation(KeyEvents.StoredKeysReprotected,
                "Protected {Count} stored key(s) again under Data Protection key {KeyId}, encrypted with the key ring certificate", reprotected, current);
        }
    }

    /// <summary>
    /// The key Data Protection protects with once it has seen the revocations: it then creates one (encrypted with the
    /// certificate). It rebuilds its key ring in the background and answers with the previous one meanwhile, so this
    /// waits for the new default key, for at most half a minute.
    /// </summary>
    private static async Task<Guid> KeyTakingOverAsync(IDataProtector protector, IReadOnlyCollection<Guid> revoked, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var current = ProtectingKeyId(protector.Protect("probe"));
            if (!revoked.Contains(current))
            {
                return current;
            }

            if (attempt == 600)
            {
                throw new InvalidOperationException($"Data Protection still protects with revoked key {current}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
        }
    }

    /// <summary>The id of the Data Protection key that made <paramref name="protectedPayload"/> (a base64url Data Protection payload).</summary>
    internal static Guid ProtectingKeyId(string protectedPayload)
    {
        var bytes = WebEncoders.Base64UrlDecode(protectedPayload);
        if (bytes.Length < 20 || System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes) != PayloadMagicHeader)
        {
            throw new CryptographicException("The value is not a Data Protection payload.");
        }

        return new Guid(bytes.AsSpan(4, 16));
    }

    /// <summary>The ids of the stored Data Protection keys whose secret is encrypted with <paramref name="certificate"/>.</summary>
    internal static async Task<HashSet<Guid>> KeysEncryptedWithAsync(ApplicationDbContext db, X509Certificate2 certificate, CancellationToken cancellationToken)
    {
        var ids = new HashSet<Guid>();
        foreach (var xml in await db.DataProtectionKeys.AsNoTracking().Select(k => k.Xml).ToListAsync(cancellationToken))
        {
            if (xml is null || !TryParse(xml, out var key) || key.Name.LocalName != "key" || !Guid.TryParse((string?)key.Attribute("id"), out var id))
            {
                continue;
            }

            // An encrypted secret names the certificate it was encrypted for (XML encryption's X509Data).
            var encryptedForCertificate = key.Descendants().Any(e => e.Name.LocalName == "encryptedSecret")
                && key.Descendants().Any(e => e.Name.LocalName == "X509Certificate" && IsCertificate(e.Value, certificate));
            if (encryptedForCertificate)
            {
                ids.Add(id);
            }
        }

        return ids;
    }

    private static bool TryParse(string xml, out XElement element)
    {
        try
        {
            element = XElement.Parse(xml);
            return true;
        }
        catch (XmlException)
        {
            element = new XElement("unreadable");
            return false;
        }
    }

    private static bool IsCertificate(string base64, X509Certificate2 certificate)
    {
        var buffer = new byte[base64.Length];
        return Convert.TryFromBase64String(base64.Trim(), buffer, out var written) && buffer.AsSpan(0, written).SequenceEqual(certificate.RawData);
    }
}
