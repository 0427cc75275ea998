using System.Net;
using System.Text;
using IdentityServer.Clients;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static IdentityServer.Tests.Admin.AdminApiCalls;
using static IdentityServer.Tests.Clients.SigningClient;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A private_key_jwt client registered with a jwks_uri: its assertions are verified with the keys published there, read
/// again after Clients:KeySetRefresh (so it rotates its keys by publishing new ones), and the keys read last keep
/// working while the URI cannot be read. Each test runs a server of its own whose requests for keys reach a test
/// publisher in memory.
/// </summary>
public abstract class ClientKeySetTests<TFixture>(TFixture fixture) where TFixture : ServerFixture
{
    private const string JwksUri = "https://keys.test/client/jwks.json";

    [SkippableFact]
    public async Task A_client_authenticates_with_the_keys_at_its_jwks_uri_and_rotates_them_by_publishing_new_ones()
    {
        var (server, keys, factory) = Start(refresh: "00:00:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks;

        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));

        // The client publishes a new key (another client's, for the test), signs with it, and the old one goes.
        var next = await SigningClient.CreateAsync(server);
        keys.Json = next.PublicJwks;
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await next.AssertionAsync(payload: AsClient(client))));
        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
    }

    [SkippableFact]
    public async Task The_keys_are_read_once_per_refresh_period()
    {
        var (server, keys, factory) = Start(refresh: "00:05:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks;

        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));

        Assert.Equal(1, keys.Reads);
    }

    /// <summary>
    /// The URI cannot be read after a first read (it answers 503, or its answer breaks off as a reset connection does): the
    /// keys read then still count; a client never read has none.
    /// </summary>
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task While_the_jwks_uri_cannot_be_read_the_keys_read_before_still_count(bool cutShort)
    {
        var (server, keys, factory) = Start(refresh: "00:00:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks;
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));

        (keys.Json, keys.CutShort) = cutShort ? (client.PublicJwks, true) : (null, false);
        var readsBefore = keys.Reads;
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
        Assert.True(keys.Reads > readsBefore, "The URI was not read again.");

        var never = await CreateClientAsync(server, "https://keys.test/unreadable/jwks.json");
        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, never.ClientId, await never.AssertionAsync()));
    }

    /// <summary>
    /// Keys that cannot verify signatures (key_ops without verify here, which IdentityModel alone would use) are ignored,
    /// as RFC 7517 section 5 asks, and the set's other keys serve.
    /// </summary>
    [SkippableFact]
    public async Task A_published_key_not_for_verifying_is_ignored_and_the_others_serve()
    {
        var (server, keys, factory) = Start(refresh: "00:00:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks.Replace("\"kty\":\"RSA\",\"use\":\"sig\"", "\"kty\":\"RSA\",\"use\":\"sig\",\"key_ops\":[\"encrypt\"]", StringComparison.Ordinal);
        Assert.Contains("encrypt", keys.Json);

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync(header: h => h["alg"] = "ES256")));
    }

    /// <summary>A client that takes its keys down (an empty set) has none: the keys read before no longer count.</summary>
    [SkippableFact]
    public async Task Publishing_an_empty_set_takes_the_keys_away()
    {
        var (server, keys, factory) = Start(refresh: "00:00:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks;
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));

        keys.Json = """{"keys":[]}""";

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
    }

    /// <summary>
    /// Requests that need the keys while they are being read wait for that read: five at once read the URI once. The
    /// publisher holds its answer until all five have asked.
    /// </summary>
    [SkippableFact]
    public async Task Requests_needing_the_keys_at_once_share_one_read()
    {
        var (_, keys, factory) = Start(refresh: "00:05:00");
        await using var __ = factory;
        keys.Json = """{"keys":[]}""";
        keys.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var keySets = factory.Services.GetRequiredService<ClientKeySets>();

        var waiting = Enumerable.Range(0, 5).Select(_ => keySets.GetAsync(JwksUri, CancellationToken.None)).ToList();
        keys.Gate.SetResult();
        await Task.WhenAll(waiting);

        Assert.Equal(1, keys.Reads);
    }

    /// <summary>Keys read before stand in for a day at most while the URI cannot be read: a removed key does not live on.</summary>
    [SkippableFact]
    public async Task Keys_read_before_stand_in_for_a_day_at_most()
    {
        var (_, keys, factory) = Start(refresh: "00:00:00");
        await using var __ = factory;
        var clock = new Keys.TestClock(DateTimeOffset.UtcNow);
        var keySets = new ClientKeySets(factory.Services.GetRequiredService<IHttpClientFactory>(), clock,
            Microsoft.Extensions.Options.Options.Create(new ClientOptions { KeySetRefresh = TimeSpan.Zero }),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<ClientKeySets>.Instance);
        keys.Json = (await CreateClientAsync(fixture)).PublicJwks;
        Assert.NotNull(await keySets.GetAsync(JwksUri, CancellationToken.None));

        keys.Json = null;
        clock.Advance(TimeSpan.FromHours(23));
        Assert.NotNull(await keySets.GetAsync(JwksUri, CancellationToken.None));
        clock.Advance(TimeSpan.FromHours(2));
        Assert.Null(await keySets.GetAsync(JwksUri, CancellationToken.None));
    }

    [SkippableFact]
    public async Task A_jwks_uri_reads_back_and_must_be_https_for_a_private_key_jwt_client_without_inline_keys()
    {
        var admin = await AdminAsync(fixture);
        var clientId = Unique.Name("keys-uri");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId, grant_types = new[] { "client_credentials" }, token_endpoint_auth_method = "private_key_jwt", jwks_uri = JwksUri,
        }))).ExpectAsync(HttpStatusCode.Created);
        var read = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal(JwksUri, read.GetProperty("jwks_uri").GetString());
        Assert.False(read.TryGetProperty("jwks", out _), read.ToString()); // no keys of its own are stored

        foreach (var refused in new object[]
        {
            new { client_id = Unique.Name("keys-uri"), grant_types = new[] { "client_credentials" }, token_endpoint_auth_method = "private_key_jwt",
                jwks_uri = "http://keys.example.com/jwks" },
            new { client_id = Unique.Name("keys-uri"), grant_types = new[] { "client_credentials" }, token_endpoint_auth_method = "private_key_jwt",
                jwks_uri = JwksUri, jwks = new { keys = Array.Empty<object>() } },
        })
        {
            await (await admin.PostJsonAsync(ClientsUrl, Json(refused))).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "jwks_uri");
        }
    }

    private (AttachedServer Server, PublishedKeys Keys, TestServerFactory Factory) Start(string refresh)
    {
        var keys = new PublishedKeys();
        var factory = fixture.StartServer(new Dictionary<string, string?> { ["Clients:KeySetRefresh"] = refresh },
            testServices: services => services.AddHttpClient(ClientKeySets.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => keys));
        return (new AttachedServer(factory, fixture.Provider), keys, factory);
    }

    private static Task<SigningClient> CreateClientAsync(ServerFixture server, string jwksUri = JwksUri) =>
        SigningClient.CreateAsync(server, c => (c.Jwks, c.JwksUri) = (null, jwksUri));

    private static Action<Dictionary<string, object>> AsClient(SigningClient client) => payload =>
        (payload["iss"], payload["sub"]) = (client.ClientId, client.ClientId);

    /// <summary>
    /// The client's key publisher: its set at <see cref="JwksUri"/>, or 503 while <see cref="Json"/> is null; each answer
    /// waits for <see cref="Gate"/> when there is one.
    /// </summary>
    private sealed class PublishedKeys : HttpMessageHandler
    {
        private int _reads;

        public volatile string? Json;

        public TaskCompletionSource? Gate { get; set; }

        /// <summary>The answer's body breaks off after its first byte.</summary>
        public bool CutShort { get; set; }

        public int Reads => _reads;

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _reads);
            if (Gate is { } gate)
            {
                await gate.Task.WaitAsync(cancellationToken);
            }

            return request.RequestUri?.AbsoluteUri == JwksUri && Json is { } json
                ? new HttpResponseMessage(HttpStatusCode.OK)
                {
                    Content = CutShort ? new StreamContent(new BrokenStream(Encoding.UTF8.GetBytes(json)[..1])) : new StringContent(json, Encoding.UTF8, "application/jwk-set+json"),
                }
                : new HttpResponseMessage(HttpStatusCode.ServiceUnavailable);
        }
    }
}

/// <summary>A body that gives its first bytes, then fails as a reset connection does.</summary>
internal sealed class BrokenStream(byte[] start) : MemoryStream(start)
{
    public override int Read(byte[] buffer, int offset, int count) =>
        Position < Length ? base.Read(buffer, offset, count) : throw new IOException("The connection was reset.");

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Position < Length ? base.ReadAsync(buffer, cancellationToken) : ValueTask.FromException<int>(new IOException("The connection was reset."));
}

public sealed class SqliteClientKeySetTests(SqliteServerFixture fixture)
    : ClientKeySetTests<SqliteServerFixture>(fixture), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlClientKeySetTests(PostgreSqlServerFixture fixture)
    : ClientKeySetTests<PostgreSqlServerFixture>(fixture), IClassFixture<PostgreSqlServerFixture>;
