using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Data;
using IdentityServer.Keys;
using IdentityServer.Shared;
using IdentityServer.Tests.Admin;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Keys;

/// <summary>A clock the test moves: the server's <see cref="TimeProvider"/>, so a rotation takes no real time.</summary>
public sealed class TestClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}

/// <summary>
/// Signing keys rotate by themselves (defaults: published 2 days ahead, signing for 90 days, retired keys published for
/// the access token lifetime of 1 hour plus a margin of 1 day), and so do the internal keys of codes and refresh tokens
/// (kept until those have expired); every instance agrees through the database, and an operator can list the keys and
/// rotate at once. Each test runs servers of its own on a fresh database.
/// </summary>
public abstract class KeyRotationTests<TFixture>(TFixture fixture) where TFixture : ServerFixture
{
    private const string ClientId = "rotation-machine";
    private const string ClientSecret = "rotation-machine-secret-123";
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    private async Task<Dictionary<string, string?>> FreshDatabaseAsync()
    {
        if (fixture.UnavailableReason is { } reason)
        {
            throw new SkipException(reason);
        }

        return new()
        {
            ["Database:Provider"] = fixture.Provider.ToString(),
            ["ConnectionStrings:IdentityServer"] = await TestDatabases.CreateAsync(fixture.Provider),
            ["Seed:Clients:0:client_id"] = ClientId,
            ["Seed:Clients:0:client_secret"] = ClientSecret,
            ["Seed:Clients:0:grant_types:0"] = "client_credentials",
        };
    }

    private Server Start(Dictionary<string, string?> settings, TestClock clock)
    {
        var factory = new TestServerFactory(settings, testServices: services => services.AddSingleton<TimeProvider>(clock));
        _ = factory.Server;
        return new Server(factory, fixture.Provider);
    }

    private sealed class Server(TestServerFactory factory, DatabaseProvider provider) : IAsyncDisposable
    {
        /// <summary>The fixture's helpers (clients, users, browsers) over this server.</summary>
        public AttachedServer Fixture { get; } = new(factory, provider);

        public IServiceProvider Services => factory.Services;

        public KeyRing Keys => factory.Services.GetRequiredService<KeyRing>();

        public HttpMessageHandler Handler => factory.Server.CreateHandler();

        public HttpClient CreateClient() => factory.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        /// <summary>A new public client and user, signed in through the code flow: the client and its refresh token.</summary>
        public async Task<(TestClient Client, string RefreshToken)> SignedInRefreshTokenAsync()
        {
            var client = await Fixture.CreatePublicClientAsync();
            var user = await Fixture.CreateUserAsync();
            var tokens = await OAuth.SignInAndRedeemAsync(Fixture, Fixture.CreateBrowser(), client, user, "openid offline_access");
            return (client, tokens.GetProperty("refresh_token").GetString()!);
        }

        public async Task<List<StoredKey>> StoredKeysAsync(string use)
        {
            await using var scope = Services.CreateAsyncScope();
            return await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().StoredKeys.AsNoTracking().Where(k => k.Use == use).ToListAsync();
        }

        /// <summary>The ids of the keys that sign (inside) and encrypt (outside) one of the tokens only this server reads.</summary>
        public (string Hmac, string Encryption) ProtectingKeyIdsOf(string token)
        {
            var encrypted = new JsonWebToken(token);
            var signed = new JsonWebTokenHandler().DecryptToken(encrypted, new TokenValidationParameters { TokenDecryptionKeys = Keys.DecryptionKeys });
            return (new JsonWebToken(signed).Kid, encrypted.Kid);
        }

        public async Task<string[]> PublishedKeyIdsAsync() =>
            [.. (await JwksAsync()).Keys.Select(k => k.Kid).Order()];

        public async Task<JsonWebKeySet> JwksAsync()
        {
            var http = CreateClient();
            return new JsonWebKeySet(await http.GetStringAsync(await HttpProtocol.EndpointAsync(http, "jwks_uri")));
        }

        public async Task<string> TokenAsync()
        {
            var response = await HttpProtocol.ClientCredentialsAsync(CreateClient(), ClientId, ClientSecret);
            var json = await OAuth.ReadJsonAsync(response);
            Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
            return json.GetProperty("access_token").GetString()!;
        }

        /// <summary>Whether a relying party holding this server's JWKS accepts the token's signature (the clock is the test's, so lifetime is not checked).</summary>
        public async Task<bool> AcceptsAsync(string token)
        {
            var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
            {
                IssuerSigningKeys = (await JwksAsync()).GetSigningKeys(),
                ValidateIssuer = false,
                ValidateAudience = false,
                ValidateLifetime = false,
                RequireSignedTokens = true,
            });
            return result.IsValid;
        }

        public ValueTask DisposeAsync() => factory.DisposeAsync();
    }

    private static string KeyIdOf(string token) => Jwt.Header(token).GetProperty("kid").GetString()!;

    [SkippableFact]
    public async Task The_internal_keys_rotate_on_the_same_schedule_and_a_refresh_token_they_protected_still_redeems_until_it_expires()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var server = Start(await FreshDatabaseAsync(), clock);
        var first = server.Keys.DescribeInternal();
        Assert.Equal([StoredKey.EncryptionUse, StoredKey.InternalSigningUse], first.Select(k => k.Use).Order());
        Assert.All(first, k => Assert.Equal("active", k.State));

        // From 88 days on the next internal keys are stored, for every instance to load, but not used yet: at 89 days
        // they take over 2 days later (never sooner than the publish-ahead time from when they are created).
        clock.Advance(TimeSpan.FromDays(89));
        await server.Keys.RefreshAsync(default);
        var next = server.Keys.DescribeInternal().Where(k => k.State == "next").ToList();
        Assert.Equal([StoredKey.EncryptionUse, StoredKey.InternalSigningUse], next.Select(k => k.Use).Order());
        Assert.All(next, k => Assert.Equal(clock.GetUtcNow() + TimeSpan.FromDays(2), k.ActivatesAt, TimeSpan.FromMilliseconds(1)));

        // Two refresh tokens issued a minute before the new keys take over are protected by the previous keys.
        clock.Advance(TimeSpan.FromDays(2) - Minute);
        var client = await server.Fixture.CreatePublicClientAsync();
        var user = await server.Fixture.CreateUserAsync();
        var browser = server.Fixture.CreateBrowser();
        var (early, late) = (await RefreshTokenAsync(), await RefreshTokenAsync());
        Assert.Equal(KeyIds(first), server.ProtectingKeyIdsOf(early));
        Assert.Equal(KeyIds(first), server.ProtectingKeyIdsOf(late));

        // Once the new keys are in use, the first still redeems, and its successor uses and redeems with the new keys.
        clock.Advance(2 * Minute);
        var successor = await RedeemAsync(server, client, early);
        Assert.Equal(KeyIds(next), server.ProtectingKeyIdsOf(successor));
        await RedeemAsync(server, client, successor);
        Assert.All(server.Keys.DescribeInternal(), k => Assert.Equal(next.Any(n => n.KeyId == k.KeyId) ? "active" : "retired", k.State));

        // The previous keys stay until every token they protected has expired: the second token still redeems a
        // minute before its 14 days are over. They are deleted at the refresh token lifetime plus the margin (1 day)
        // after they retired.
        clock.Advance(TimeSpan.FromDays(14) - 3 * Minute);
        await RedeemAsync(server, client, late);
        clock.Advance(TimeSpan.FromDays(1));
        await server.Keys.RefreshAsync(default);
        Assert.Equal(4, (await server.StoredKeysAsync(StoredKey.InternalSigningUse)).Count + (await server.StoredKeysAsync(StoredKey.EncryptionUse)).Count);
        clock.Advance(3 * Minute);
        await server.Keys.RefreshAsync(default);
        Assert.Equal(KeyIds(next), (
            (await server.StoredKeysAsync(StoredKey.InternalSigningUse)).Single().Id,
            (await server.StoredKeysAsync(StoredKey.EncryptionUse)).Single().Id));
        Assert.Equal(KeyIds(next), KeyIds(server.Keys.DescribeInternal()));

        async Task<string> RefreshTokenAsync() =>
            (await OAuth.SignInAndRedeemAsync(server.Fixture, browser, client, user, "openid offline_access")).GetProperty("refresh_token").GetString()!;
    }

    /// <summary>Redeems a refresh token (asserting success) and returns its successor.</summary>
    private static async Task<string> RedeemAsync(Server server, TestClient client, string refreshToken)
    {
        var response = await OAuth.RefreshAsync(server.Fixture, client, refreshToken);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json.GetProperty("refresh_token").GetString()!;
    }

    [SkippableFact]
    public async Task With_an_encryption_certificate_refresh_tokens_are_encrypted_to_it_and_only_the_HMAC_key_is_stored_and_rotates()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        KeyRingTestCertificate.Apply(settings, setting: "Keys:EncryptionCertificate");
        await using var server = Start(settings, clock);
        var (client, refreshToken) = await server.SignedInRefreshTokenAsync();

        Assert.Equal(SecurityAlgorithms.RsaOAEP, new JsonWebToken(refreshToken).Alg);
        Assert.True(server.Keys.Knows(new JsonWebToken(refreshToken).Kid));
        await RedeemAsync(server, client, refreshToken);
        Assert.Empty(await server.StoredKeysAsync(StoredKey.EncryptionUse));

        clock.Advance(TimeSpan.FromDays(89));
        await server.Keys.RefreshAsync(default);
        Assert.Equal([("active", StoredKey.InternalSigningUse), ("next", StoredKey.InternalSigningUse)],
            server.Keys.DescribeInternal().Select(k => (k.State, k.Use)));
        Assert.Empty(await server.StoredKeysAsync(StoredKey.EncryptionUse));
    }

    [SkippableFact]
    public async Task After_an_encryption_certificate_is_configured_a_refresh_token_encrypted_before_still_redeems()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        TestClient client;
        string refreshToken;
        await using (var before = Start(settings, clock))
        {
            (client, refreshToken) = await before.SignedInRefreshTokenAsync();
        }

        KeyRingTestCertificate.Apply(settings, setting: "Keys:EncryptionCertificate");
        await using var after = Start(settings, clock);
        var successor = await RedeemAsync(after, client, refreshToken);

        Assert.Equal(SecurityAlgorithms.Aes256KW, new JsonWebToken(refreshToken).Alg);
        Assert.Equal(SecurityAlgorithms.RsaOAEP, new JsonWebToken(successor).Alg);
        await RedeemAsync(after, client, successor);
        Assert.Equal("retired", Assert.Single(after.Keys.DescribeInternal(), k => k.Use == StoredKey.EncryptionUse).State);
    }

    [SkippableFact]
    public async Task With_a_signing_certificate_tokens_are_signed_with_it_it_is_not_rotated_and_the_internal_keys_still_rotate()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        KeyRingTestCertificate.Apply(settings, setting: "Keys:SigningCertificate");
        await using var server = Start(settings, clock);

        var token = await server.TokenAsync();
        Assert.True(server.Keys.Knows(KeyIdOf(token)), "a token signed with the certificate would reload the keys on every check");
        Assert.Equal([KeyIdOf(token)], await server.PublishedKeyIdsAsync());
        Assert.True(await server.AcceptsAsync(token));
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.Keys.RotateNowAsync(default));

        clock.Advance(TimeSpan.FromDays(89));
        await server.Keys.RefreshAsync(default);
        Assert.Equal([KeyIdOf(token)], await server.PublishedKeyIdsAsync());
        Assert.Equal(2, server.Keys.DescribeInternal().Count(k => k.State == "next"));
    }

    /// <summary>
    /// The certificates are used with RSA algorithms (identity tokens are RS256 and the JWKS publishes a signing
    /// certificate's RSA key; codes and refresh tokens are encrypted RSA-OAEP): an ECDSA certificate (what one might pick
    /// along with <c>Keys:Algorithm=ES256</c>) stops the start naming the setting, rather than a server answering token
    /// (or device authorization) requests with a 500.
    /// </summary>
    [SkippableTheory]
    [InlineData("Keys:SigningCertificate")]
    [InlineData("Keys:EncryptionCertificate")]
    public async Task An_ECDSA_certificate_stops_the_start_naming_the_setting(string setting)
    {
        var settings = await FreshDatabaseAsync();
        settings["Keys:Algorithm"] = "ES256";
        using var ecdsa = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        using var certificate = new System.Security.Cryptography.X509Certificates.CertificateRequest(
                "CN=identity server ECDSA certificate test", ecdsa, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        var path = Path.Combine(Path.GetTempPath(), "idsrv-tests", $"ecdsa-{Guid.NewGuid():N}.pfx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx, "ecdsa-test"));
        settings[$"{setting}:Path"] = path;
        settings[$"{setting}:Password"] = "ecdsa-test";

        var refused = Assert.ThrowsAny<Exception>(() => Start(settings, new TestClock(DateTimeOffset.UtcNow)));
        Assert.Contains(refused.AndItsCauses(), e => e is IdentityServer.Hosting.StartupConfigurationException
            && e.Message.StartsWith(setting, StringComparison.Ordinal) && e.Message.Contains("RSA", StringComparison.Ordinal));
    }

    /// <summary>The ids of the HMAC key and the encryption key among internal keys of one generation.</summary>
    private static (string Hmac, string Encryption) KeyIds(IReadOnlyList<InternalKeyState> keys) =>
        (keys.Single(k => k.Use == StoredKey.InternalSigningUse).KeyId, keys.Single(k => k.Use == StoredKey.EncryptionUse).KeyId);

    [SkippableFact]
    public async Task A_new_key_is_published_ahead_signs_from_its_time_and_the_old_key_leaves_the_jwks_after_its_tokens_expire()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var server = Start(await FreshDatabaseAsync(), clock);
        var first = await server.TokenAsync();
        var firstKey = KeyIdOf(first);
        Assert.Equal([firstKey], await server.PublishedKeyIdsAsync());

        // Just before the publish-ahead point nothing changes.
        clock.Advance(TimeSpan.FromDays(88) - Minute);
        await server.Keys.RefreshAsync(default);
        Assert.Equal([firstKey], await server.PublishedKeyIdsAsync());

        // From 88 days on the next key is published, but the current one still signs.
        clock.Advance(2 * Minute);
        await server.Keys.RefreshAsync(default);
        var published = await server.PublishedKeyIdsAsync();
        Assert.Equal(2, published.Length);
        var nextKey = Assert.Single(published, k => k != firstKey);
        Assert.Equal(firstKey, KeyIdOf(await server.TokenAsync()));

        // At 90 days the next key signs; tokens of the previous key still validate while it is published.
        clock.Advance(TimeSpan.FromDays(2));
        var second = await server.TokenAsync();
        Assert.Equal(nextKey, KeyIdOf(second));
        Assert.True(await server.AcceptsAsync(first));
        Assert.True(await server.AcceptsAsync(second));
        Assert.Equal(published, await server.PublishedKeyIdsAsync());

        // The retired key stays published for the access token lifetime (1 hour) plus the margin (1 day), then leaves.
        clock.Advance(TimeSpan.FromHours(25) - 2 * Minute);
        await server.Keys.RefreshAsync(default);
        Assert.Equal(published, await server.PublishedKeyIdsAsync());
        clock.Advance(2 * Minute);
        await server.Keys.RefreshAsync(default);
        Assert.Equal([nextKey], await server.PublishedKeyIdsAsync());
        Assert.False(await server.AcceptsAsync(first));
        Assert.True(await server.AcceptsAsync(await server.TokenAsync()));
    }

    /// <summary>
    /// A rotation that falls behind (here no key check runs: the test's clock drives no timer, and the check interval is
    /// an hour) shows in readiness, Degraded but still 200, and in the overdue gauge, until a check catches up. Within
    /// one check of the due time it shows nowhere: that check is the one that stores the key.
    /// </summary>
    [SkippableFact]
    public async Task A_rotation_that_falls_behind_shows_in_readiness_and_in_the_overdue_gauge_until_a_check_catches_up()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        settings["Keys:CheckInterval"] = "01:00:00";
        await using var server = Start(settings, clock);
        Assert.Equal((HttpStatusCode.OK, "Healthy"), await ReadinessAsync(server));

        // The next keys are due at 88 days (a 90-day period, published 2 days ahead), and the check within the hour
        // after stores them: half an hour on, nothing is late yet.
        clock.Advance(TimeSpan.FromDays(88) + TimeSpan.FromMinutes(30));
        Assert.All(server.Keys.RotationOverdue(), use => Assert.Equal(TimeSpan.Zero, use.Overdue));

        // That check was missed, and so were five more: five hours late.
        clock.Advance(TimeSpan.FromHours(5.5));
        Assert.Equal((HttpStatusCode.OK, "Degraded"), await ReadinessAsync(server));
        var fiveHours = TimeSpan.FromHours(5).TotalSeconds;
        Assert.Contains(OverdueGauge(), point => point.Use == "sig" && Math.Abs(point.Seconds - fiveHours) < 1);
        Assert.Contains(OverdueGauge(), point => point.Use == "mac" && Math.Abs(point.Seconds - fiveHours) < 1);

        await server.Keys.RefreshAsync(default);
        Assert.Equal((HttpStatusCode.OK, "Healthy"), await ReadinessAsync(server));
        Assert.All(server.Keys.RotationOverdue(), use => Assert.Equal(TimeSpan.Zero, use.Overdue));
        Assert.DoesNotContain(OverdueGauge(), point => Math.Abs(point.Seconds - fiveHours) < 1);
    }

    private static async Task<(HttpStatusCode, string)> ReadinessAsync(Server server)
    {
        var response = await server.CreateClient().GetAsync("/health/ready");
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Every point of the overdue gauge, of every server in this process (a listener of its own, so none overwrites another's).</summary>
    private static List<(string? Use, double Seconds)> OverdueGauge()
    {
        var points = new List<(string?, double)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, meters) =>
        {
            if (instrument is { Name: "identityserver.keys.rotation_overdue", Meter.Name: "IdentityServer" })
            {
                meters.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, seconds, tags, _) =>
            points.Add((tags.ToArray().FirstOrDefault(tag => tag.Key == "use").Value as string, seconds)));
        listener.Start();
        listener.RecordObservableInstruments();
        return points;
    }

    [SkippableFact]
    public async Task Two_instances_due_to_rotate_at_the_same_moment_create_one_key_and_publish_the_same_set()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        await using var one = Start(settings, clock);
        await using var two = Start(settings, clock);
        var firstKey = KeyIdOf(await one.TokenAsync());
        clock.Advance(TimeSpan.FromDays(89));

        await Task.WhenAll(Task.Run(() => one.Keys.RefreshAsync(default)), Task.Run(() => two.Keys.RefreshAsync(default)));
        await Task.WhenAll(one.Keys.RefreshAsync(default), two.Keys.RefreshAsync(default));

        foreach (var use in new[] { StoredKey.SigningUse, StoredKey.InternalSigningUse, StoredKey.EncryptionUse })
        {
            Assert.Equal([0, 1], (await one.StoredKeysAsync(use)).Select(k => k.Slot).Order());
        }

        Assert.Equal(await one.PublishedKeyIdsAsync(), await two.PublishedKeyIdsAsync());
        Assert.Equal(2, (await one.PublishedKeyIdsAsync()).Length);

        // A refresh token from one instance, protected by the internal keys before the rotation.
        var (client, refreshToken) = await one.SignedInRefreshTokenAsync();

        // Both switch to the new keys at their time (2 days after they were created), and each accepts the other's tokens.
        clock.Advance(TimeSpan.FromDays(2) + Minute);
        var fromOne = await one.TokenAsync();
        var fromTwo = await two.TokenAsync();
        Assert.NotEqual(firstKey, KeyIdOf(fromOne));
        Assert.Equal(KeyIdOf(fromOne), KeyIdOf(fromTwo));
        Assert.True(await two.AcceptsAsync(fromOne));
        Assert.True(await one.AcceptsAsync(fromTwo));
        var successor = await RedeemAsync(two, client, refreshToken);
        Assert.NotEqual(one.ProtectingKeyIdsOf(refreshToken), two.ProtectingKeyIdsOf(successor));
        Assert.Equal(two.ProtectingKeyIdsOf(successor), one.ProtectingKeyIdsOf(await RedeemAsync(one, client, successor)));
    }

    [SkippableFact]
    public async Task After_a_rotation_now_on_one_instance_another_accepts_the_new_keys_tokens_without_waiting_for_its_next_check()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        settings["Keys:CheckInterval"] = "1.00:00:00"; // no scheduled check may load the new key during the test
        await using var one = Start(settings, clock);
        await using var two = Start(settings, clock);
        await using var three = Start(settings, clock);
        var client = await one.Fixture.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var before = await AdminApiCalls.TokenAsync(one.Fixture, client.ClientId, client.ClientSecret!, "admin");

        await one.Keys.RotateNowAsync(default);
        var after = await AdminApiCalls.TokenAsync(one.Fixture, client.ClientId, client.ClientSecret!, "admin");

        Assert.NotEqual(KeyIdOf(before), KeyIdOf(after));
        Assert.False(two.Keys.Knows(KeyIdOf(after)));
        Assert.False(three.Keys.Knows(KeyIdOf(after)));
        Assert.Equal(HttpStatusCode.OK, (await AdminApiCalls.WithBearer(two.Fixture, after).GetAsync(AdminApiCalls.ClientsUrl)).StatusCode);
        Assert.True((await OAuth.IntrospectAsync(three.Fixture, client, after)).GetProperty("active").GetBoolean());

        // However many tokens name unknown keys, one reload serves them all (at most one every few seconds).
        var reload = one.Keys.LoadUnknownKeyAsync();
        Assert.Same(reload, one.Keys.LoadUnknownKeyAsync());
        await reload;
        Assert.Same(reload, one.Keys.LoadUnknownKeyAsync());
    }

    /// <summary>
    /// Two operators rotate now on two instances at the same moment: the second rotation starts while the first one's
    /// transaction is open. On PostgreSQL both read the same slot as free, the second waits at that slot until the
    /// first commits, then drops the key it made and takes the first one's; on SQLite the second waits for the write
    /// lock and rotates again after it. Either way no slot holds two keys and both instances sign with the newest key.
    /// </summary>
    [SkippableFact]
    public async Task Two_instances_rotating_now_at_the_same_moment_never_store_two_keys_for_one_slot()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = await FreshDatabaseAsync();
        await using var one = Start(settings, clock);
        await using var two = Start(settings, clock);
        Task<SigningKeyState>? second = null;

        await one.Keys.RotateNowAsync(async (_, _, transaction) =>
        {
            second = Task.Run(() => two.Keys.RotateNowAsync(default));
            if (fixture.Provider == DatabaseProvider.PostgreSql)
            {
                await Eventually.TrueAsync(() => WaitsOnALockAsync(one), TimeSpan.FromSeconds(15), "the second rotation waiting at the slot");
            }

            await transaction.CommitAsync();
        }, default);
        var secondActive = await second!;
        await one.Keys.RefreshAsync(default);

        foreach (var use in new[] { StoredKey.SigningUse, StoredKey.InternalSigningUse, StoredKey.EncryptionUse })
        {
            var slots = (await one.StoredKeysAsync(use)).Select(k => k.Slot).Order().ToList();
            Assert.Equal(Enumerable.Range(0, slots.Count), slots);
        }

        var signing = (await one.StoredKeysAsync(StoredKey.SigningUse)).OrderBy(k => k.Slot).ToList();
        Assert.Equal(fixture.Provider == DatabaseProvider.PostgreSql ? 2 : 3, signing.Count);
        Assert.Equal(signing[^1].Id, secondActive.KeyId);
        Assert.Equal(signing[^1].Id, KeyIdOf(await one.TokenAsync()));
        Assert.Equal(signing[^1].Id, KeyIdOf(await two.TokenAsync()));
    }

    /// <summary>Whether a connection to this test's PostgreSQL database waits for a lock another transaction holds.</summary>
    private static async Task<bool> WaitsOnALockAsync(Server server)
    {
        await using var scope = server.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        return await db.Database.SqlQueryRaw<int>(
            "SELECT count(*)::int AS \"Value\" FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").SingleAsync() > 0;
    }

    /// <summary>
    /// With ES256 the signing keys are P-256 and sign access tokens; identity tokens stay RS256 (OpenID Connect requires
    /// it of every provider and a client expects it by default), signed by RSA identity keys published beside them,
    /// which rotate now with the others. Discovery names RS256 as the identity tokens' algorithm.
    /// </summary>
    [SkippableFact]
    public async Task With_ES256_access_tokens_are_ES256_and_identity_tokens_stay_RS256()
    {
        var settings = await FreshDatabaseAsync();
        settings["Keys:Algorithm"] = "ES256";
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var server = Start(settings, clock);

        var token = await server.TokenAsync();
        Assert.Equal("ES256", Jwt.Header(token).GetProperty("alg").GetString());
        var keys = (await server.JwksAsync()).Keys;
        Assert.Equal(2, keys.Count);
        var ec = Assert.Single(keys, k => k.Kty == "EC");
        Assert.Equal(("P-256", "ES256", KeyIdOf(token)), (ec.Crv, ec.Alg, ec.Kid));
        var rsa = Assert.Single(keys, k => k.Kty == "RSA");
        Assert.Equal("RS256", rsa.Alg);
        Assert.All(keys, k => Assert.False(k.HasPrivateKey));
        Assert.True(await server.AcceptsAsync(token));
        var discovery = await HttpProtocol.DiscoverAsync(server.CreateClient());
        Assert.Equal(["RS256"], discovery.GetProperty("id_token_signing_alg_values_supported").EnumerateArray().Select(a => a.GetString()));

        var client = await server.Fixture.CreatePublicClientAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server.Fixture, server.Fixture.CreateBrowser(), client, await server.Fixture.CreateUserAsync(), "openid offline_access");
        var idToken = tokens.GetProperty("id_token").GetString()!;
        Assert.Equal(("RS256", rsa.Kid), (Jwt.Header(idToken).GetProperty("alg").GetString(), KeyIdOf(idToken)));
        Assert.True(await server.AcceptsAsync(idToken));
        Assert.Equal("ES256", Jwt.Header(tokens.GetProperty("access_token").GetString()!).GetProperty("alg").GetString());
        Assert.Equal(["id-sig", "sig"], server.Keys.Describe().Where(k => k.State == "active").Select(k => k.Use).Order());

        // Rotated now, both kinds move to a new key at once, and the identity tokens are still RS256.
        await server.Keys.RotateNowAsync(default);
        var rotated = await OAuth.RefreshAsync(server.Fixture, client, tokens.GetProperty("refresh_token").GetString()!);
        var refreshed = await OAuth.ReadJsonAsync(rotated);
        Assert.True(rotated.IsSuccessStatusCode, refreshed.ToString());
        var newIdToken = refreshed.GetProperty("id_token").GetString()!;
        Assert.Equal("RS256", Jwt.Header(newIdToken).GetProperty("alg").GetString());
        Assert.NotEqual(rsa.Kid, KeyIdOf(newIdToken));
        Assert.NotEqual(ec.Kid, KeyIdOf(await server.TokenAsync()));
        Assert.True(await server.AcceptsAsync(newIdToken));
        Assert.True(await server.AcceptsAsync(idToken));
    }

    /// <summary>
    /// A server switched from RS256 to ES256 keeps signing identity tokens with RSA keys: its RSA key until the first
    /// P-256 key takes over, published ahead like every signing key, then its RSA identity key, published since the
    /// switch. Access tokens follow the P-256 key.
    /// </summary>
    [SkippableFact]
    public async Task A_server_switched_to_ES256_keeps_identity_tokens_on_RSA_keys_through_the_switch()
    {
        var settings = await FreshDatabaseAsync();
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using (var first = Start(settings, clock))
        {
            await first.TokenAsync();
        }

        settings["Keys:Algorithm"] = "ES256";
        await using var server = Start(settings, clock);
        var client = await server.Fixture.CreatePublicClientAsync();
        var user = await server.Fixture.CreateUserAsync();
        async Task<(string Access, string Identity)> SignInAsync()
        {
            var tokens = await OAuth.SignInAndRedeemAsync(server.Fixture, server.Fixture.CreateBrowser(), client, user, "openid");
            return (tokens.GetProperty("access_token").GetString()!, tokens.GetProperty("id_token").GetString()!);
        }

        var before = await SignInAsync();
        Assert.Equal(("RS256", "RS256"), (Jwt.Header(before.Access).GetProperty("alg").GetString(), Jwt.Header(before.Identity).GetProperty("alg").GetString()));
        Assert.Equal(KeyIdOf(before.Access), KeyIdOf(before.Identity));
        var identityKey = Assert.Single(server.Keys.Describe(), k => k.Use == "id-sig").KeyId;
        Assert.Contains(identityKey, await server.PublishedKeyIdsAsync());

        // Past the RSA key's period (the checks on the way store the next keys ahead): the P-256 key signs access
        // tokens, an RSA identity key identity tokens.
        clock.Advance(TimeSpan.FromDays(89));
        await server.Keys.RefreshAsync(default);
        clock.Advance(TimeSpan.FromDays(2));
        await server.Keys.RefreshAsync(default);
        var after = await SignInAsync();
        Assert.Equal("ES256", Jwt.Header(after.Access).GetProperty("alg").GetString());
        var activeIdentityKey = Assert.Single(server.Keys.Describe(), k => k.Use == "id-sig" && k.State == "active").KeyId;
        Assert.Equal(("RS256", activeIdentityKey), (Jwt.Header(after.Identity).GetProperty("alg").GetString(), KeyIdOf(after.Identity)));
        Assert.True(await server.AcceptsAsync(after.Identity));
    }

    /// <summary>
    /// A server on ES256 from before the identity keys (identity tokens ES256, the JWKS its P-256 keys only) gets its
    /// first RSA identity key published ahead like every signing key: until it has been in the JWKS for
    /// <c>Keys:PublishAhead</c>, identity tokens stay on the P-256 key that relying parties which cached the JWKS hold,
    /// and discovery names both algorithms.
    /// </summary>
    [SkippableFact]
    public async Task An_ES256_server_from_before_identity_keys_publishes_its_first_identity_key_ahead()
    {
        var settings = await FreshDatabaseAsync();
        settings["Keys:Algorithm"] = "ES256";
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using (var before = Start(settings, clock))
        {
            await before.TokenAsync();
            // What a version before the identity keys left in the database.
            await using var scope = before.Services.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().StoredKeys
                .Where(k => k.Use == StoredKey.IdentitySigningUse).ExecuteDeleteAsync();
        }

        clock.Advance(TimeSpan.FromDays(10));
        await using var server = Start(settings, clock);
        var signingKey = Assert.Single(await server.StoredKeysAsync(StoredKey.SigningUse)).Id;
        var client = await server.Fixture.CreatePublicClientAsync();
        var user = await server.Fixture.CreateUserAsync();
        async Task<string> IdentityTokenAsync() =>
            (await OAuth.SignInAndRedeemAsync(server.Fixture, server.Fixture.CreateBrowser(), client, user, "openid")).GetProperty("id_token").GetString()!;
        async Task<string[]> IdentityTokenAlgorithmsAsync() =>
            [.. (await HttpProtocol.DiscoverAsync(server.CreateClient())).GetProperty("id_token_signing_alg_values_supported").EnumerateArray().Select(a => a.GetString()!).Order()];

        var identityKey = Assert.Single(server.Keys.Describe(), k => k.Use == StoredKey.IdentitySigningUse);
        Assert.Equal("next", identityKey.State);
        Assert.Contains(identityKey.KeyId, await server.PublishedKeyIdsAsync());
        var early = await IdentityTokenAsync();
        Assert.Equal(("ES256", signingKey), (Jwt.Header(early).GetProperty("alg").GetString(), KeyIdOf(early)));
        Assert.Equal(["ES256", "RS256"], await IdentityTokenAlgorithmsAsync());

        clock.Advance(TimeSpan.FromDays(2));
        await server.Keys.RefreshAsync(default);
        var later = await IdentityTokenAsync();
        Assert.Equal(("RS256", identityKey.KeyId), (Jwt.Header(later).GetProperty("alg").GetString(), KeyIdOf(later)));
        Assert.Equal(["RS256"], await IdentityTokenAlgorithmsAsync());
        Assert.True(await server.AcceptsAsync(later));
    }

    [SkippableFact]
    public async Task An_admin_lists_the_keys_and_rotates_now_and_the_new_key_signs_at_once()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var server = Start(await FreshDatabaseAsync(), clock);
        var before = KeyIdOf(await server.TokenAsync());
        var browser = await SignedInAdminAsync(server);

        var listed = await browser.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://localhost/api/admin/keys"));
        Assert.Equal(HttpStatusCode.OK, listed.StatusCode);
        var keys = (await listed.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("keys").EnumerateArray().ToList();
        var only = Assert.Single(keys);
        Assert.Equal((before, "active", "RS256"), (only.GetProperty("kid").GetString(), only.GetProperty("state").GetString(), only.GetProperty("alg").GetString()));

        // A change made with the admin's cookie carries the antiforgery token, as the admin pages' scripts send it.
        var page = await browser.NavigateAsync("https://localhost/admin/roles");
        var rotate = new HttpRequestMessage(HttpMethod.Post, "https://localhost/api/admin/keys/rotate");
        rotate.Headers.Add("RequestVerificationToken", page.Document.QuerySelector("input[name=__RequestVerificationToken]")!.GetAttribute("value")!);
        var rotated = await browser.SendAsync(rotate);
        Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
        var now = (await rotated.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("kid").GetString();
        Assert.NotEqual(before, now);
        Assert.Equal(now, KeyIdOf(await server.TokenAsync()));
        Assert.Equal(new[] { before, now }.Order(), await server.PublishedKeyIdsAsync());

        var states = (await (await browser.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://localhost/api/admin/keys")))
            .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("keys").EnumerateArray()
            .ToDictionary(k => k.GetProperty("kid").GetString()!, k => k.GetProperty("state").GetString());
        Assert.Equal("retired", states[before]);
        Assert.Equal("active", states[now!]);

        // The internal keys follow five key checks (1 minute each) later, once every instance holds them.
        var rotatedAt = clock.GetUtcNow();
        var waiting = server.Keys.DescribeInternal().Where(k => k.State == "next").ToList();
        Assert.Equal([StoredKey.EncryptionUse, StoredKey.InternalSigningUse], waiting.Select(k => k.Use).Order());
        Assert.All(waiting, k => Assert.Equal(rotatedAt + 5 * Minute, k.ActivatesAt, TimeSpan.FromMilliseconds(1)));
        clock.Advance(5 * Minute);
        Assert.All(server.Keys.DescribeInternal(), k => Assert.Equal(waiting.Any(w => w.KeyId == k.KeyId) ? "active" : "retired", k.State));
        var listedInternal = (await (await browser.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://localhost/api/admin/keys")))
            .Content.ReadFromJsonAsync<JsonElement>()).GetProperty("internal_keys").EnumerateArray()
            .Where(k => k.GetProperty("state").GetString() == "active").Select(k => k.GetProperty("kid").GetString()).Order();
        Assert.Equal(waiting.Select(k => k.KeyId).Order(), listedInternal);
    }

    [SkippableFact]
    public async Task Anonymous_callers_and_users_without_the_admin_role_cannot_list_or_rotate_keys()
    {
        await using var server = Start(await FreshDatabaseAsync(), new TestClock(DateTimeOffset.UtcNow));
        var before = await server.PublishedKeyIdsAsync();
        var anonymous = server.CreateClient();
        var user = await SignedInUserAsync(server, roles: []);

        foreach (var caller in new Func<HttpRequestMessage, Task<HttpResponseMessage>>[] { anonymous.SendAsync, user.SendAsync })
        {
            var list = await caller(new HttpRequestMessage(HttpMethod.Get, "https://localhost/api/admin/keys"));
            Assert.False(list.IsSuccessStatusCode, $"listing answered {(int)list.StatusCode}");
            var rotate = await caller(new HttpRequestMessage(HttpMethod.Post, "https://localhost/api/admin/keys/rotate"));
            Assert.False(rotate.IsSuccessStatusCode, $"rotating answered {(int)rotate.StatusCode}");
        }

        Assert.Equal(before, await server.PublishedKeyIdsAsync());
    }

    private static Task<Browser> SignedInAdminAsync(Server server) => SignedInUserAsync(server, roles: ["admin"]);

    private static async Task<Browser> SignedInUserAsync(Server server, string[] roles)
    {
        var userName = Unique.Name("keys-user");
        var password = Unique.Secret();
        await using (var scope = server.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<Microsoft.AspNetCore.Identity.UserManager<IdentityServer.Accounts.ApplicationUser>>();
            var roleManager = scope.ServiceProvider.GetRequiredService<Microsoft.AspNetCore.Identity.RoleManager<Microsoft.AspNetCore.Identity.IdentityRole>>();
            var user = new IdentityServer.Accounts.ApplicationUser { UserName = userName, Email = $"{userName}@example.test", EmailConfirmed = true };
            Assert.True((await users.CreateAsync(user, password)).Succeeded);
            foreach (var role in roles)
            {
                if (!await roleManager.RoleExistsAsync(role))
                {
                    await roleManager.CreateAsync(new Microsoft.AspNetCore.Identity.IdentityRole(role));
                }

                Assert.True((await users.AddToRoleAsync(user, role)).Succeeded);
            }
        }

        var browser = new Browser(new() { [TestServerFactory.Authority.Host] = server.Handler });
        var login = await browser.NavigateAsync("https://localhost/account/login");
        await OAuth.SignInAsync(browser, login, new TestUser("", userName, password, ""), stopAt: _ => true);
        return browser;
    }
}

public sealed class SqliteKeyRotationTests(SqliteServerFixture server) : KeyRotationTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlKeyRotationTests(PostgreSqlServerFixture server) : KeyRotationTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
