using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

public abstract class DiscoveryTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    public static readonly TheoryData<string> Endpoints =
    [
        "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "end_session_endpoint", "introspection_endpoint",
        "revocation_endpoint", "device_authorization_endpoint", "pushed_authorization_request_endpoint", "jwks_uri",
    ];

    private async Task<JsonElement> DiscoveryAsync()
    {
        using var response = await server.CreateClient().GetAsync("/.well-known/openid-configuration");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await OAuth.ReadJsonAsync(response);
    }

    private static string[] Strings(JsonElement discovery, string name) =>
        discovery.GetProperty(name).EnumerateArray().Select(e => e.GetString()!).ToArray();

    [SkippableTheory]
    [MemberData(nameof(Endpoints))]
    public async Task Discovery_lists_the_endpoint_as_an_absolute_address_of_the_issuer(string name)
    {
        var discovery = await DiscoveryAsync();
        var issuer = new Uri(discovery.GetProperty("issuer").GetString()!);

        Assert.True(discovery.TryGetProperty(name, out var value), $"{name} is missing from discovery: {discovery}");
        var endpoint = new Uri(value.GetString()!, UriKind.Absolute);
        Assert.Equal(issuer.GetLeftPart(UriPartial.Authority), endpoint.GetLeftPart(UriPartial.Authority));
        Assert.Equal(Uri.UriSchemeHttps, endpoint.Scheme);
    }

    [SkippableFact]
    public async Task The_jwks_uri_and_the_discovery_document_answer_json()
    {
        var discovery = await DiscoveryAsync();
        using var jwks = await server.CreateClient().GetAsync(discovery.GetProperty("jwks_uri").GetString());
        Assert.Equal(HttpStatusCode.OK, jwks.StatusCode);
        Assert.Equal("application/json", jwks.Content.Headers.ContentType?.MediaType);
    }

    [SkippableFact]
    public async Task Only_the_code_flow_refresh_client_credentials_device_and_token_exchange_grants_are_advertised()
    {
        var discovery = await DiscoveryAsync();

        Assert.Equal(
            new[] { "authorization_code", "client_credentials", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code",
                "urn:ietf:params:oauth:grant-type:token-exchange" },
            Strings(discovery, "grant_types_supported").Order(StringComparer.Ordinal));
        Assert.Equal(["code"], Strings(discovery, "response_types_supported"));
        Assert.Equal(["S256"], Strings(discovery, "code_challenge_methods_supported"));
    }

    [SkippableFact]
    public async Task The_query_and_form_post_response_modes_are_advertised()
    {
        // OpenIddict also lists "fragment", which OAuth 2.0 Multiple Response Types allows with response_type=code;
        // what clients rely on is query (the default for code) and form_post (ASP.NET Core's OpenIdConnect handler).
        var modes = Strings(await DiscoveryAsync(), "response_modes_supported");

        Assert.Contains("query", modes);
        Assert.Contains("form_post", modes);
    }

    [SkippableFact]
    public async Task Id_tokens_are_advertised_as_signed_with_RS256()
    {
        var discovery = await DiscoveryAsync();

        Assert.Contains("RS256", Strings(discovery, "id_token_signing_alg_values_supported"));
    }

    /// <summary>
    /// A HEAD is the GET without its body (RFC 9110 9.3.2), also where the document cache does not answer: before any
    /// GET filled it, with a query string, with an Origin, at the address with a trailing slash (which OpenIddict serves too).
    /// </summary>
    [SkippableTheory]
    [InlineData("/.well-known/openid-configuration")]
    [InlineData("/.well-known/jwks")]
    public async Task A_HEAD_to_discovery_or_the_JWKS_answers_as_its_GET_without_the_body(string path)
    {
        await using var fresh = server.StartServer(); // nothing cached yet
        using var http = new AttachedServer(fresh, server.Provider).CreateClient();
        foreach (var (address, origin) in new[] { (path, null), (path + "?x=1", null), (path, "https://app.example"), (path + "/", null) })
        {
            using var head = new HttpRequestMessage(HttpMethod.Head, address);
            using var get = new HttpRequestMessage(HttpMethod.Get, address);
            if (origin is not null)
            {
                head.Headers.Add("Origin", origin);
                get.Headers.Add("Origin", origin);
            }

            using var headResponse = await http.SendAsync(head);
            using var getResponse = await http.SendAsync(get);

            Assert.True(headResponse.StatusCode == HttpStatusCode.OK, $"HEAD {address} (Origin {origin}): {(int)headResponse.StatusCode}");
            Assert.Empty(await headResponse.Content.ReadAsByteArrayAsync());
            Assert.Equal(getResponse.Content.Headers.ContentType, headResponse.Content.Headers.ContentType);
            Assert.Equal((await getResponse.Content.ReadAsByteArrayAsync()).Length, headResponse.Content.Headers.ContentLength);
        }
    }

    [SkippableTheory]
    [InlineData("/health")]
    [InlineData("/health/ready")]
    public async Task The_health_endpoints_answer_200_with_the_database_reachable(string path)
    {
        using var response = await server.CreateClient().GetAsync(path);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("Healthy", await response.Content.ReadAsStringAsync());
    }

    /// <summary>Probes read (GET, HEAD); any other method is refused rather than answered as a GET.</summary>
    [SkippableTheory]
    [InlineData("/health")]
    [InlineData("/health/ready")]
    public async Task The_health_endpoints_answer_GET_and_HEAD_and_refuse_other_methods_with_405(string path)
    {
        using var http = server.CreateClient();
        using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, path));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);

        foreach (var method in new[] { "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND" })
        {
            using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
            Assert.True(response.StatusCode == HttpStatusCode.MethodNotAllowed, $"{method} {path}: {(int)response.StatusCode}");
            Assert.Equal(["GET", "HEAD"], response.Content.Headers.Allow);
        }
    }
}

public sealed class SqliteDiscoveryTests(SqliteServerFixture server)
    : DiscoveryTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlDiscoveryTests(PostgreSqlServerFixture server) : DiscoveryTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
