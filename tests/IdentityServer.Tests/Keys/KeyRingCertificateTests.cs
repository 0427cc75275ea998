using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Xml.Linq;
using IdentityServer.Data;
using IdentityServer.Hosting;
using IdentityServer.Keys;
using IdentityServer.Shared;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Keys;

/// <summary>
/// <c>Keys:KeyRingCertificate</c>: Data Protection's keys are stored encrypted with the certificate, so a copy of the
/// database (or a backup) no longer holds both the signing keys and what unlocks them. Seen the way such a reader
/// would: a Data Protection of its own over the database's key rows, without the certificate.
/// </summary>
public abstract class KeyRingCertificateTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    // The only test of the class: it changes the class's server's settings.
    [SkippableFact]
    public async Task Setting_the_certificate_on_an_existing_database_revokes_the_plain_keys_and_protects_the_stored_keys_again_keeping_issued_tokens()
    {
        // Issued before the setting: an access token, a refresh token and a browser session.
        const string resource = "https://key-ring-api.test";
        var scope = await server.CreateScopeAsync(resource);
        var machine = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        var accessToken = (await OAuth.ReadJsonAsync(await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), machine.ClientId, machine.ClientSecret!, scope)))
            .GetProperty("access_token").GetString()!;
        var app = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var signedIn = await OAuth.SignInAndRedeemAsync(server, browser, app, user, "openid offline_access");
        var kids = await PublishedKeyIdsAsync();
        var keysBefore = KeyIds((await ReadDatabaseAsync()).DataProtectionKeys);

        // Without the certificate, whoever holds the database reads every stored key: this is what the setting is for.
        Assert.All(await ReadableWithoutTheCertificateAsync(), readable => Assert.True(readable));

        KeyRingTestCertificate.Apply(server.Settings);
        await server.RestartAsync();

        // The stored keys are now protected by a key encrypted with the certificate; the keys from before are revoked.
        var after = await ReadDatabaseAsync();
        Assert.All(await ReadableWithoutTheCertificateAsync(), readable => Assert.False(readable));
        var newKeys = KeyIds(after.DataProtectionKeys).Except(keysBefore).ToList();
        Assert.Single(newKeys);
        Assert.True(IsEncrypted(after.DataProtectionKeys.Single(xml => KeyIds([xml]).Contains(newKeys[0]))));
        Assert.Equal(keysBefore.Order(), RevokedKeyIds(after.DataProtectionKeys).Order());

        // The same signing and encryption keys: published kids unchanged, tokens issued before still good.
        Assert.Equal(kids, await PublishedKeyIdsAsync());
        var validated = await OAuth.ValidateJwtAsync(server, accessToken, resource);
        Assert.True(validated.IsValid, validated.Exception?.ToString());
        var refreshed = await OAuth.RefreshAsync(server, app, signedIn.GetProperty("refresh_token").GetString()!);
        Assert.True(refreshed.IsSuccessStatusCode, (await OAuth.ReadJsonAsync(refreshed)).ToString());

        // But the session cookie from before was protected by a revoked key: the user signs in again.
        browser.AddHost(TestServerFactory.Authority.Host, server.Factory.Server.CreateHandler());
        var silent = await OAuth.AuthorizeAsync(browser,
            await OAuth.AuthorizeUrlAsync(server, app.ClientId, "openid", Pkce.Create(), extra: new Dictionary<string, string?> { ["prompt"] = "none" }), user: null);
        Assert.True(silent.GetValueOrDefault("error") == "login_required", string.Join(", ", silent));

        // A second start changes nothing more.
        await server.RestartAsync();
        var again = await ReadDatabaseAsync();
        Assert.Equal(after.DataProtectionKeys.Count, again.DataProtectionKeys.Count);
        Assert.Equal(after.StoredKeys, again.StoredKeys);

        // Without the certificate the server cannot read its keys, and says which setting is missing.
        var withoutIt = new Dictionary<string, string?> { ["Keys:KeyRingCertificate:Path"] = "" };
        var refused = Assert.ThrowsAny<Exception>(() => server.StartServer(withoutIt));
        Assert.Contains(refused.AndItsCauses(), e => e is StartupConfigurationException && e.Message.Contains("Keys:KeyRingCertificate", StringComparison.Ordinal));
    }

    private async Task<IReadOnlyList<string>> PublishedKeyIdsAsync()
    {
        var jwks = await server.CreateClient().GetStringAsync(await server.EndpointAsync("jwks_uri"));
        return [.. new JsonWebKeySet(jwks).Keys.Select(k => k.Kid).Order()];
    }

    private async Task<(List<string> DataProtectionKeys, List<string> StoredKeys)> ReadDatabaseAsync()
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        return (await db.DataProtectionKeys.AsNoTracking().OrderBy(k => k.Id).Select(k => k.Xml!).ToListAsync(),
            await db.StoredKeys.AsNoTracking().OrderBy(k => k.Id).Select(k => k.ProtectedKey).ToListAsync());
    }

    /// <summary>For each stored key: whether a reader of the database without the certificate can unprotect it.</summary>
    private async Task<bool[]> ReadableWithoutTheCertificateAsync()
    {
        var (dataProtectionKeys, storedKeys) = await ReadDatabaseAsync();
        var services = new ServiceCollection().AddLogging();
        services.AddDataProtection().SetApplicationName("IdentityServer").DisableAutomaticKeyGeneration();
        // Such a reader has every key not encrypted with the certificate, and ignores revocations.
        var readable = dataProtectionKeys.Where(xml => XElement.Parse(xml).Name.LocalName == "key" && !IsEncrypted(xml));
        services.Configure<KeyManagementOptions>(o => o.XmlRepository = new CopiedKeys(readable));
        await using var provider = services.BuildServiceProvider();
        var protector = provider.GetRequiredService<IDataProtectionProvider>().CreateProtector(KeyRing.ProtectorPurpose);
        return [.. storedKeys.Select(protectedKey =>
        {
            try
            {
                protector.Unprotect(protectedKey);
                return true;
            }
            catch (CryptographicException)
            {
                return false;
            }
        })];
    }

    private static IEnumerable<Guid> KeyIds(IEnumerable<string> rows) =>
        rows.Select(XElement.Parse).Where(e => e.Name.LocalName == "key").Select(e => Guid.Parse((string)e.Attribute("id")!));

    private static IEnumerable<Guid> RevokedKeyIds(IEnumerable<string> rows) =>
        rows.Select(XElement.Parse).Where(e => e.Name.LocalName == "revocation")
            .Select(e => Guid.Parse((string)e.Element("key")!.Attribute("id")!));

    private static bool IsEncrypted(string keyXml) =>
        XElement.Parse(keyXml).Descendants().Any(e => e.Name.LocalName == "encryptedSecret")
        && !XElement.Parse(keyXml).Descendants().Any(e => e.Name.LocalName == "masterKey");

    private sealed class CopiedKeys(IEnumerable<string> xml) : IXmlRepository
    {
        private readonly List<XElement> _elements = [.. xml.Select(XElement.Parse)];

        public IReadOnlyCollection<XElement> GetAllElements() => _elements;

        public void StoreElement(XElement element, string friendlyName) => throw new NotSupportedException("A copy is only read.");
    }

    internal static bool AllEncrypted(IEnumerable<string> keyXml) => keyXml.All(IsEncrypted);
}

public sealed class SqliteKeyRingCertificateTests(SqliteServerFixture server)
    : KeyRingCertificateTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlKeyRingCertificateTests(PostgreSqlServerFixture server)
    : KeyRingCertificateTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;

/// <summary>A server whose database had the key ring certificate from its first start.</summary>
public sealed class SqliteEncryptedKeyRingFixture : SqliteServerFixture
{
    public SqliteEncryptedKeyRingFixture() => KeyRingTestCertificate.Apply(Settings);
}

/// <summary>What a restart must keep (tokens, sessions) holds with the key ring encrypted too.</summary>
public sealed class SqliteEncryptedKeyRingRestartTests(SqliteEncryptedKeyRingFixture server)
    : RestartTests<SqliteEncryptedKeyRingFixture>(server), IClassFixture<SqliteEncryptedKeyRingFixture>;

public sealed class SqliteEncryptedKeyRingTests(SqliteEncryptedKeyRingFixture server) : IClassFixture<SqliteEncryptedKeyRingFixture>
{
    [Fact]
    public async Task Every_data_protection_key_of_a_new_database_is_stored_encrypted()
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var keys = await db.DataProtectionKeys.AsNoTracking().Select(k => k.Xml!).ToListAsync();

        Assert.NotEmpty(keys);
        Assert.True(KeyRingCertificateTests<SqliteEncryptedKeyRingFixture>.AllEncrypted(keys), string.Join("\n", keys));
    }
}

public sealed class KeyRingCertificateConfigurationTests
{
    [Fact]
    public void A_key_ring_certificate_without_an_RSA_key_stops_the_start_naming_the_setting()
    {
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = new CertificateRequest("CN=not rsa", ecdsa, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(Path.GetTempPath(), "idsrv-tests", $"ecdsa-{Guid.NewGuid():N}.pfx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, "pw"));
        try
        {
            using var factory = new TestServerFactory(new Dictionary<string, string?>
            {
                ["Keys:KeyRingCertificate:Path"] = path,
                ["Keys:KeyRingCertificate:Password"] = "pw",
            });

            var refused = Assert.ThrowsAny<Exception>(() => factory.Server);
            Assert.Contains(refused.AndItsCauses(), e => e is StartupConfigurationException
                && e.Message.StartsWith("Keys:KeyRingCertificate:", StringComparison.Ordinal) && e.Message.Contains("not an RSA certificate", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(path);
        }
    }
}

/// <summary>A self-signed certificate in a PFX file, made once per test run, and the settings that name it.</summary>
public static class KeyRingTestCertificate
{
    private const string Password = "key-ring-test";

    private static readonly Lazy<string> File = new(() =>
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=identity server key ring test", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        var folder = Path.Combine(Path.GetTempPath(), "idsrv-tests");
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, $"key-ring-{Guid.NewGuid():N}.pfx");
        System.IO.File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, Password));
        return path;
    });

    public static void Apply(IDictionary<string, string?> settings)
    {
        settings["Keys:KeyRingCertificate:Path"] = File.Value;
        settings["Keys:KeyRingCertificate:Password"] = Password;
    }
}
