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
            // A PEM certificate's Path misspelt or left out: its key alone would be ignored, and keys generated instead.
            // (A password left behind is not refused: it stays when a replaced certificate's Path is removed.)
            return string.IsNullOrWhiteSpace(certificate?.KeyPath)
                ? null
                : throw new StartupConfigurationException($"{setting}:KeyPath is set but {setting}:Path is not.");
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
        catch (CryptographicException e) when (string.IsNullOrWhiteSpace(certificate.KeyPath) && IsPem(certificate.Path))
        {
            throw new StartupConfigurationException(
                $"{setting}: '{certificate.Path}' is a PEM file: name the PEM file of its private key in {setting}:KeyPath (a PFX takes Password instead).", e);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new StartupConfigurationException($"{setting}: cannot load '{certificate.Path}': {e.Message}", e);
        }
    }

    private static bool IsPem(string path)
    {
        try
        {
            // openssl may put "Bag Attributes" lines before the first block.
            return File.ReadLines(path).Take(20).Any(line => line.StartsWith("-----BEGIN ", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
