using System.Security.Cryptography.X509Certificates;
using System.Xml;
using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection.Repositories;

namespace IdentityServer.Keys;

/// <summary>Reads what Data Protection stores for each of its keys (a <c>key</c> element) and for each revocation.</summary>
public static class DataProtectionKeyXml
{
    public static XElement? TryParse(string? xml)
    {
        try
        {
            return xml is null ? null : XElement.Parse(xml);
        }
        catch (XmlException)
        {
            return null;
        }
    }

    /// <summary>The key's id, for a <c>key</c> element; null for anything else (a revocation).</summary>
    public static Guid? KeyId(XElement element) =>
        element.Name.LocalName == "key" && Guid.TryParse((string?)element.Attribute("id"), out var id) ? id : null;

    /// <summary>The key a revocation names (null for a date-based revocation of every older key, which we never write).</summary>
    public static Guid? RevokedKeyId(XElement element) =>
        element.Name.LocalName == "revocation" && Guid.TryParse((string?)element.Element("key")?.Attribute("id"), out var id) ? id : null;

    /// <summary>
    /// Whether the key's secret is stored encrypted for <paramref name="certificate"/>: XML encryption names the
    /// certificate it encrypted for (its <c>X509Data</c>), which is also how Data Protection finds the certificate to decrypt.
    /// </summary>
    public static bool IsEncryptedWith(XElement key, X509Certificate2 certificate) =>
        KeyId(key) is not null
        && !key.Descendants().Any(e => e.Name.LocalName == "masterKey")
        && key.Descendants().Where(e => e.Name.LocalName == "encryptedSecret")
            .SelectMany(secret => secret.Descendants().Where(e => e.Name.LocalName == "X509Certificate"))
            .Any(e => IsCertificate(e.Value, certificate));

    /// <summary>Whether the element is a key whose secret is stored encrypted (with whatever certificate).</summary>
    public static bool IsEncrypted(XElement key) => KeyId(key) is not null && key.Descendants().Any(e => e.Name.LocalName == "encryptedSecret");

    private static bool IsCertificate(string base64, X509Certificate2 certificate)
    {
        var buffer = new byte[base64.Length];
        return Convert.TryFromBase64String(base64.Trim(), buffer, out var written) && buffer.AsSpan(0, written).SequenceEqual(certificate.RawData);
    }
}

/// <summary>
/// With a key ring certificate, the only Data Protection keys the server trusts are those encrypted with it: a key
/// stored in plain text (from before the setting, or written by an instance started without it) is left out of the
/// key ring, so nothing it protected or could forge is accepted. Revocations of keys left out are left out too.
/// </summary>
public sealed class CertificateEncryptedKeysOnly(IXmlRepository stored, X509Certificate2 certificate) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements()
    {
        // Each key element on its own merits: a plain-text element reusing a trusted key's id is left out too.
        var trusted = stored.GetAllElements()
            .Where(e => DataProtectionKeyXml.KeyId(e) is null || DataProtectionKeyXml.IsEncryptedWith(e, certificate)).ToList();
        var trustedIds = trusted.Select(DataProtectionKeyXml.KeyId).OfType<Guid>().ToHashSet();
        return [.. trusted.Where(e => DataProtectionKeyXml.RevokedKeyId(e) is not { } revoked || trustedIds.Contains(revoked))];
    }

    public void StoreElement(XElement element, string friendlyName) => stored.StoreElement(element, friendlyName);
}

/// <summary>A fixed set of stored elements, read only: what the start reads older stored keys through.</summary>
public sealed class ReadOnlyXmlRepository(IEnumerable<XElement> elements) : IXmlRepository
{
    private readonly List<XElement> _elements = [.. elements];

    public IReadOnlyCollection<XElement> GetAllElements() => _elements;

    public void StoreElement(XElement element, string friendlyName) =>
        throw new InvalidOperationException("This view of the stored Data Protection keys is read only.");
}
