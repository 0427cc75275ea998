using System.Net;
using System.Text;
using IdentityServer.Clients;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static IdentityServer.Tests.Admin.AdminApiCalls;

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

    /// <summary>The URI answers 503 after a first read: the keys read then still count; a client never read has none.</summary>
    [SkippableFact]
    public async Task While_the_jwks_uri_cannot_be_read_the_keys_read_before_still_count()
    {
        var (server, keys, factory) = Start(refresh: "00:00:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks;
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));

        keys.Json = null;
        var readsBefore = keys.Reads;
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
        Assert.True(keys.Reads > readsBefore, "The URI was not read again.");

        var never = await CreateClientAsync(server, "https://keys.test/unreadable/jwks.json");
        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, never.ClientId, await never.AssertionAsync()));
    }

    /// <summary>
    /// A published set is checked as inline keys are (<see cref="ClientJsonWebKeys"/>): one with a key not for verifying
    /// (key_ops), which IdentityModel alone would use, is not taken.
    /// </summary>
    [SkippableFact]
    public async Task A_published_set_with_a_key_not_for_verifying_is_not_taken()
    {
        var (server, keys, factory) = Start(refresh: "00:00:00");
        await using var _ = factory;
        var client = await CreateClientAsync(server);
        keys.Json = client.PublicJwks.Replace("\"use\":\"sig\"", "\"use\":\"sig\",\"key_ops\":[\"encrypt\"]", StringComparison.Ordinal);

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client.ClientId, await client.AssertionAsync()));
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

    private static async Task<HttpResponseMessage> ClientCredentialsAsync(ServerFixture server, string clientId, string assertion) =>
        await OAuth.PostFormAsync(server, "token_endpoint", new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["client_id"] = clientId,
            ["client_assertion_type"] = SigningClient.AssertionType, ["client_assertion"] = assertion,
        });

    private static async Task ExpectTokenAsync(HttpResponseMessage response) =>
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");

    private static async Task ExpectInvalidClientAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Unauthorized && body.Contains("invalid_client"), $"{(int)response.StatusCode}: {body}");
    }

    /// <summary>The client's key publisher: its set at <see cref="JwksUri"/>, or 503 while <see cref="Json"/> is null.</summary>
    private sealed class PublishedKeys : HttpMessageHandler
    {
        private int _reads;

        public volatile string? Json;

        public int Reads => _reads;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _reads);
            return Task.FromResult(request.RequestUri?.AbsoluteUri == JwksUri && Json is { } json
                ? new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(json, Encoding.UTF8, "application/jwk-set+json") }
                : new HttpResponseMessage(HttpStatusCode.ServiceUnavailable));
        }
    }
}

public sealed class SqliteClientKeySetTests(SqliteServerFixture fixture)
    : ClientKeySetTests<SqliteServerFixture>(fixture), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlClientKeySetTests(PostgreSqlServerFixture fixture)
    : ClientKeySetTests<PostgreSqlServerFixture>(fixture), IClassFixture<PostgreSqlServerFixture>;
