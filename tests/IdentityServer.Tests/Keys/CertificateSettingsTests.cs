using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using IdentityServer.Hosting;
using IdentityServer.Shared;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Keys;

/// <summary>A certificate setting an operator got half right stops the start saying what is missing.</summary>
public sealed class CertificateSettingsTests
{
    [Theory]
    [InlineData("Keys:SigningCertificate")]
    [InlineData("Keys:KeyRingCertificate")]
    public void A_key_path_without_a_path_stops_the_start_instead_of_being_ignored(string setting)
    {
        using var factory = new TestServerFactory(new Dictionary<string, string?> { [$"{setting}:KeyPath"] = "/etc/identityserver/keys/signing.key" });

        var refused = Assert.ThrowsAny<Exception>(() => factory.Server);
        Assert.Contains(refused.AndItsCauses(), e => e is StartupConfigurationException
            && e.Message == $"{setting}:KeyPath is set but {setting}:Path is not.");
    }

    [Fact]
    public void A_PEM_certificate_without_its_key_path_stops_the_start_asking_for_it()
    {
        using var rsa = RSA.Create(2048);
        using var certificate = new CertificateRequest("CN=pem without key", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(Path.GetTempPath(), "idsrv-tests", $"signing-{Guid.NewGuid():N}.crt");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, certificate.ExportCertificatePem());
        try
        {
            using var factory = new TestServerFactory(new Dictionary<string, string?> { ["Keys:SigningCertificate:Path"] = path });

            var refused = Assert.ThrowsAny<Exception>(() => factory.Server);
            Assert.Contains(refused.AndItsCauses(), e => e is StartupConfigurationException
                && e.Message.StartsWith("Keys:SigningCertificate:", StringComparison.Ordinal) && e.Message.Contains("Keys:SigningCertificate:KeyPath", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
