using System.Security.Cryptography.X509Certificates;
using System.Xml.Linq;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Keys;

/// <summary>
/// The certificate that encrypts Data Protection's keys where they are stored (<c>Keys:KeyRingCertificate</c>), if
/// any, and the certificates it replaced (<c>Keys:PreviousKeyRingCertificates</c>), which only the start uses.
/// </summary>
public sealed record KeyRingCertificate(X509Certificate2? Certificate, IReadOnlyList<X509Certificate2> Replaced);

/// <summary>
/// Runs at start, before the stored keys are loaded. With <c>Keys:KeyRingCertificate</c> set, Data Protection trusts
/// only keys encrypted with the certificate (and makes one if there is none). Stored keys whose private part is
/// protected by any other Data Protection key (from before the setting, or from a replaced certificate) are read
/// through a read-only view of every stored Data Protection key and protected again under the trusted one; the
/// Data Protection keys left behind are deleted. Stored keys are all read before any is changed, so one this server
/// cannot read stops the start with only the new Data Protection key written. Without the setting, a database whose
/// keys are encrypted stops the start before Data Protection can write a plain-text key beside them. This protects
/// copies of the database (and backups) made from then on; whoever can write to the database is not kept out by it.
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
        var stored = new List<(int Id, XElement Element)>();
        foreach (var row in await db.DataProtectionKeys.AsNoTracking().Select(k => new { k.Id, k.Xml }).ToListAsync(cancellationToken))
        {
            if (DataProtectionKeyXml.TryParse(row.Xml) is { } element)
            {
                stored.Add((row.Id, element));
            }
        }

        if (keyRingCertificate.Certificate is not { } certificate)
        {
            CheckWithoutCertificate(stored.Select(row => row.Element));
            return;
        }

        var protector = dataProtection.CreateProtector(KeyRing.ProtectorPurpose);
        // Data Protection sees only keys encrypted with the certificate; with none, this makes the first.
        var current = ProtectingKeyId(protector.Protect("probe"), "a new payload");
        var usable = keyManager.GetAllKeys().Where(key => !key.IsRevoked).Select(key => key.KeyId).ToHashSet();
        var rows = await db.StoredKeys.AsNoTracking().Select(k => new { k.Id, k.ProtectedKey }).ToListAsync(cancellationToken);
        var stale = rows.Where(row => !usable.Contains(ProtectingKeyId(row.ProtectedKey, $"stored key {row.Id}"))).ToList();
        var materials = stale.Count == 0 ? [] : ReadThroughEveryStoredKey(stored.Select(row => row.Element), stale.Select(row => (row.Id, row.ProtectedKey)));

        var reprotected = 0;
        for (var i = 0; i < stale.Count; i++)
        {
            var (id, protectedKey) = (stale[i].Id, stale[i].ProtectedKey);
            var again = protector.Protect(materials[i]);
            // Only if no other instance starting at the same moment protected it again first.
            reprotected += await db.StoredKeys.Where(k => k.Id == id && k.ProtectedKey == protectedKey)
                .ExecuteUpdateAsync(setters => setters.SetProperty(k => k.ProtectedKey, again), cancellationToken);
        }

        if (reprotected > 0)
        {
            logger.LogInformation(KeyEvents.StoredKeysReprotected,
                "Protected {Count} stored key(s) again under Data Protection key {KeyId}, encrypted with the key ring certificate", reprotected, current);
        }

        // Nothing needs the other keys now, and a later copy of the database should not hold them.
        var untrusted = stored.Where(row => DataProtectionKeyXml.KeyId(row.Element) is not null && !DataProtectionKeyXml.IsEncryptedWith(row.Element, certificate)).ToList();
        if (untrusted.Count > 0)
        {
            var rowIds = untrusted.Select(row => row.Id).ToList();
            await db.DataProtectionKeys.Where(k => rowIds.Contains(k.Id)).ExecuteDeleteAsync(cancellationToken);
            logger.LogWarning(KeyEvents.KeyRingEncrypted,
                "Deleted {Count} Data Protection key(s) not encrypted with the key ring certificate {Thumbprint}: {KeyIds}. Key {KeyId}, " +
                "encrypted with it, protects from now on; sessions, forms and emailed links protected by the deleted keys have ended.",
                untrusted.Count, certificate.Thumbprint, untrusted.Select(row => DataProtectionKeyXml.KeyId(row.Element)), current);
        }
    }

    /// <summary>
    /// Without the certificate: keys encrypted with one mean the setting was dropped (or this instance was started
    /// without it); Data Protection would find no key it can read and store a plain-text one. So stop first.
    /// </summary>
    private void CheckWithoutCertificate(IEnumerable<XElement> stored)
    {
        if (stored.Any(DataProtectionKeyXml.IsEncrypted))
        {
            throw new StartupConfigurationException(
                "Keys:KeyRingCertificate is not set, but Data Protection's keys in the database are encrypted with a certificate: " +
                "give this instance the certificate.");
        }

        if (!environment.IsDevelopment())
        {
            logger.LogWarning(KeyEvents.KeyRingUnencrypted,
                "Keys:KeyRingCertificate is not set: Data Protection's keys are stored unencrypted in the database, beside the " +
                "signing and encryption keys they protect, so whoever reads the database or a backup can read both.");
        }
    }

    /// <summary>
    /// The private parts of <paramref name="rows"/>, read through a Data Protection of their own that holds every stored
    /// key, whether trusted or not, with revocations left out (a key revoked since it protected a stored key still
    /// reads it here), and every configured certificate.
    /// </summary>
    private List<string> ReadThroughEveryStoredKey(IEnumerable<XElement> stored, IEnumerable<(string Id, string ProtectedKey)> rows)
    {
        var services = new ServiceCollection().AddLogging();
        X509Certificate2[] certificates = [keyRingCertificate.Certificate!, .. keyRingCertificate.Replaced];
        services.AddDataProtection()
            .SetApplicationName(KeysExtensions.DataProtectionApplicationName)
            .DisableAutomaticKeyGeneration()
            .UnprotectKeysWithAnyCertificate(certificates);
        services.Configure<KeyManagementOptions>(options =>
            options.XmlRepository = new ReadOnlyXmlRepository(stored.Where(e => DataProtectionKeyXml.KeyId(e) is not null)));
        using var provider = services.BuildServiceProvider();
        var everyKey = provider.GetRequiredService<IDataProtectionProvider>().CreateProtector(KeyRing.ProtectorPurpose);
        return [.. rows.Select(row => KeyRing.Unprotect(everyKey, row.Id, row.ProtectedKey))];
    }

    /// <summary>The id of the Data Protection key that made <paramref name="protectedPayload"/> (a base64url Data Protection payload).</summary>
    internal static Guid ProtectingKeyId(string protectedPayload, string what)
    {
        try
        {
            var bytes = WebEncoders.Base64UrlDecode(protectedPayload);
            if (bytes.Length >= 20 && System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes) == PayloadMagicHeader)
            {
                return new Guid(bytes.AsSpan(4, 16));
            }
        }
        catch (FormatException)
        {
            // Reported below.
        }

        throw new StartupConfigurationException($"{what} is not a Data Protection payload; the database's StoredKeys table holds something this server did not write.");
    }
}
