using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
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
    public async Task Setting_the_certificate_on_an_existing_database_deletes_the_plain_keys_and_protects_the_stored_keys_again_keeping_issued_tokens()
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
        var kids = await server.PublishedKeyIdsAsync();
        var keysBefore = StoredKeyReader.KeyIds((await ReadDatabaseAsync()).DataProtectionKeys).ToList();

        // Without the certificate, whoever holds the database reads every stored key: this is what the setting is for.
        Assert.All(await ReadableWithoutTheCertificateAsync(), readable => Assert.True(readable));

        KeyRingTestCertificate.Apply(server.Settings);
        await server.RestartAsync();

        // The stored keys are now protected by a key encrypted with the certificate; the keys from before are gone.
        var after = await ReadDatabaseAsync();
        Assert.All(await ReadableWithoutTheCertificateAsync(), readable => Assert.False(readable));
        var keysAfter = StoredKeyReader.KeyIds(after.DataProtectionKeys).ToList();
        Assert.Single(keysAfter);
        Assert.DoesNotContain(keysAfter[0], keysBefore);
        Assert.All(after.DataProtectionKeys, xml => Assert.True(StoredKeyReader.IsEncrypted(xml), xml));

        // The same signing and encryption keys: published kids unchanged, tokens issued before still good.
        Assert.Equal(kids, await server.PublishedKeyIdsAsync());
        var validated = await OAuth.ValidateJwtAsync(server, accessToken, resource);
        Assert.True(validated.IsValid, validated.Exception?.ToString());
        var refreshed = await OAuth.RefreshAsync(server, app, signedIn.GetProperty("refresh_token").GetString()!);
        Assert.True(refreshed.IsSuccessStatusCode, (await OAuth.ReadJsonAsync(refreshed)).ToString());

        // But the session cookie from before was protected by a deleted key: the user signs in again.
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
        await server.RestartAsync();
        Assert.Equal(again.DataProtectionKeys, (await ReadDatabaseAsync()).DataProtectionKeys);
    }

    private Task<StoredKeyReader.Rows> ReadDatabaseAsync() => StoredKeyReader.ReadAsync(server);
    private async Task<bool[]> ReadableWithoutTheCertificateAsync() => await StoredKeyReader.ReadableAsync(await ReadDatabaseAsync(), certificate: null);

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
        Assert.True(keys.All(StoredKeyReader.IsEncrypted), string.Join("\n", keys));
    }

    [Fact]
    public async Task The_admin_key_list_says_the_key_ring_is_encrypted_and_with_which_certificate()
    {
        var admin = await Admin.AdminApiCalls.AdminAsync(server);

        var keyRing = (await admin.GetFromJsonAsync<JsonElement>("/api/admin/keys")).GetProperty("key_ring");

        Assert.True(keyRing.GetProperty("encrypted").GetBoolean());
        Assert.Equal(KeyRingTestCertificate.Default.Certificate.Thumbprint, keyRing.GetProperty("certificate_thumbprint").GetString());
    }
}

/// <summary>Replacing the key ring certificate: the old one is needed once, then no more.</summary>
public sealed class KeyRingCertificateReplacementTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    // The only test of the class: it changes the class's server's settings.
    [Fact]
    public async Task After_the_first_start_with_a_new_certificate_the_stored_keys_need_only_the_new_one()
    {
        var (first, second) = (KeyRingTestCertificate.Create(), KeyRingTestCertificate.Create());
        KeyRingTestCertificate.Apply(server.Settings, first);
        await server.RestartAsync();
        var kids = await server.PublishedKeyIdsAsync();
        var underFirst = await StoredKeyReader.ReadAsync(server);
        Assert.All(await StoredKeyReader.ReadableAsync(underFirst, first.Certificate), readable => Assert.True(readable));

        KeyRingTestCertificate.Apply(server.Settings, second);
        KeyRingTestCertificate.ApplyPrevious(server.Settings, first);
        await server.RestartAsync();

        var underSecond = await StoredKeyReader.ReadAsync(server);
        Assert.All(await StoredKeyReader.ReadableAsync(underSecond, first.Certificate), readable => Assert.False(readable));
        Assert.All(await StoredKeyReader.ReadableAsync(underSecond, second.Certificate), readable => Assert.True(readable));
        Assert.Equal(kids, await server.PublishedKeyIdsAsync());

        // From now on the old certificate is not needed.
        server.Settings.Remove("Keys:PreviousKeyRingCertificates:0:Path");
        await server.RestartAsync();
        Assert.Equal(kids, await server.PublishedKeyIdsAsync());
    }
}

/// <summary>
/// With the certificate, a Data Protection key stored in plain text (by an instance started without the setting, say)
/// is not trusted: Data Protection does not see it, what it protects is refused, and the next start deletes it.
/// </summary>
public sealed class UntrustedDataProtectionKeyTests(SqliteEncryptedKeyRingFixture server) : IClassFixture<SqliteEncryptedKeyRingFixture>
{
    [Fact]
    public async Task A_plain_text_key_added_to_the_database_is_not_trusted_and_the_next_start_deletes_it()
    {
        // A key made outside the server, stored beside its keys while it runs, and a payload that key protects.
        var outside = new ServiceCollection().AddLogging();
        var repository = new OutsideKeys();
        outside.AddDataProtection().SetApplicationName("IdentityServer");
        outside.Configure<KeyManagementOptions>(o => o.XmlRepository = repository);
        string forged;
        await using (var provider = outside.BuildServiceProvider())
        {
            forged = provider.GetRequiredService<IDataProtectionProvider>().CreateProtector(KeyRing.ProtectorPurpose).Protect("forged");
        }

        var planted = Assert.Single(repository.Stored);
        var plantedId = Guid.Parse((string)planted.Attribute("id")!);
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            db.DataProtectionKeys.Add(new() { FriendlyName = "planted", Xml = planted.ToString(SaveOptions.DisableFormatting) });
            await db.SaveChangesAsync();
        }

        // Data Protection reads its key repository afresh here: the planted key is left out.
        Assert.DoesNotContain(server.Factory.Services.GetRequiredService<IKeyManager>().GetAllKeys(), key => key.KeyId == plantedId);
        var protector = server.Factory.Services.GetRequiredService<IDataProtectionProvider>().CreateProtector(KeyRing.ProtectorPurpose);
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(forged));

        await server.RestartAsync();
        Assert.DoesNotContain(plantedId, StoredKeyReader.KeyIds((await StoredKeyReader.ReadAsync(server)).DataProtectionKeys));
    }

    private sealed class OutsideKeys : IXmlRepository
    {
        public List<XElement> Stored { get; } = [];

        public IReadOnlyCollection<XElement> GetAllElements() => Stored;

        public void StoreElement(XElement element, string friendlyName) => Stored.Add(element);
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

/// <summary>Self-signed RSA certificates in PFX files, and the settings that name one.</summary>
public static class KeyRingTestCertificate
{
    private const string Password = "key-ring-test";

    private static readonly Lazy<TestCertificate> Shared = new(Create);

    /// <summary>The certificate <see cref="Apply"/> names by default.</summary>
    public static TestCertificate Default => Shared.Value;

    public sealed record TestCertificate(string Path, X509Certificate2 Certificate);

    public static TestCertificate Create()
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=identity server key ring test", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        var folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "idsrv-tests");
        Directory.CreateDirectory(folder);
        var path = System.IO.Path.Combine(folder, $"key-ring-{Guid.NewGuid():N}.pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, Password));
        return new TestCertificate(path, certificate);
    }

    /// <summary>Names <paramref name="certificate"/> (by default one shared by the test run) as <paramref name="setting"/>.</summary>
    public static void Apply(IDictionary<string, string?> settings, TestCertificate? certificate = null, string setting = "Keys:KeyRingCertificate")
    {
        settings[$"{setting}:Path"] = (certificate ?? Shared.Value).Path;
        settings[$"{setting}:Password"] = Password;
    }

    public static void ApplyPrevious(IDictionary<string, string?> settings, TestCertificate certificate)
    {
        settings["Keys:PreviousKeyRingCertificates:0:Path"] = certificate.Path;
        settings["Keys:PreviousKeyRingCertificates:0:Password"] = Password;
    }
}

/// <summary>
/// What a reader of a copy of the database can do with the stored keys: a Data Protection of its own over the copied
/// key rows it can read (those in plain text, and those encrypted with the certificate it may hold), ignoring revocations.
/// </summary>
public static class StoredKeyReader
{
    public sealed record Rows(List<string> DataProtectionKeys, List<string> StoredKeys);

    public static async Task<Rows> ReadAsync(ServerFixture server)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        return new Rows(await db.DataProtectionKeys.AsNoTracking().OrderBy(k => k.Id).Select(k => k.Xml!).ToListAsync(),
            await db.StoredKeys.AsNoTracking().OrderBy(k => k.Id).Select(k => k.ProtectedKey).ToListAsync());
    }

    /// <summary>For each stored key: whether such a reader, holding <paramref name="certificate"/> or none, can unprotect it.</summary>
    public static async Task<bool[]> ReadableAsync(Rows rows, X509Certificate2? certificate)
    {
        var services = new ServiceCollection().AddLogging();
        var dataProtection = services.AddDataProtection().SetApplicationName("IdentityServer").DisableAutomaticKeyGeneration();
        if (certificate is not null)
        {
            dataProtection.UnprotectKeysWithAnyCertificate(certificate);
        }

        var readable = rows.DataProtectionKeys.Select(XElement.Parse)
            .Where(key => key.Name.LocalName == "key" && (!IsEncrypted(key.ToString()) || certificate is not null && IsEncryptedFor(key, certificate)));
        services.Configure<KeyManagementOptions>(o => o.XmlRepository = new CopiedKeys(readable));
        await using var provider = services.BuildServiceProvider();
        var protector = provider.GetRequiredService<IDataProtectionProvider>().CreateProtector(KeyRing.ProtectorPurpose);
        return [.. rows.StoredKeys.Select(protectedKey =>
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

    public static IEnumerable<Guid> KeyIds(IEnumerable<string> rows) =>
        rows.Select(XElement.Parse).Where(e => e.Name.LocalName == "key").Select(e => Guid.Parse((string)e.Attribute("id")!));

    public static bool IsEncrypted(string keyXml) =>
        XElement.Parse(keyXml).Descendants().Any(e => e.Name.LocalName == "encryptedSecret")
        && !XElement.Parse(keyXml).Descendants().Any(e => e.Name.LocalName == "masterKey");

    public static bool IsEncryptedFor(XElement key, X509Certificate2 certificate) =>
        key.Descendants().Any(e => e.Name.LocalName == "X509Certificate" && Convert.FromBase64String(e.Value).AsSpan().SequenceEqual(certificate.RawData));

    private sealed class CopiedKeys(IEnumerable<XElement> keys) : IXmlRepository
    {
        private readonly List<XElement> _elements = [.. keys];

        public IReadOnlyCollection<XElement> GetAllElements() => _elements;

        public void StoreElement(XElement element, string friendlyName) => throw new NotSupportedException("A copy is only read.");
    }
}
