using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using IdentityServer.Hosting;

namespace IdentityServer.Keys;

/// <summary>Loads the certificates the <c>Keys</c> section names; a file that cannot be used stops the start naming its setting.</summary>
public static class CertificateFiles
{
    /// <summary>The certificate with its private key, or null when <paramref name="certificate"/> names no file.</summary>
    public static X509Certificate2? Load(CertificateOptions? certificate, string setting)
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
                : throw new StartupConfigurationException($"{setting}: '{certificate.Path}' has no private key.");
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new StartupConfigurationException($"{setting}: cannot load '{certificate.Path}': {e.Message}", e);
        }
    }
}
