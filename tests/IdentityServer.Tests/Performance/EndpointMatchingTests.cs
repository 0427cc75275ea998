using System.Net;
using IdentityServer.Performance;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Tests.Performance;

/// <summary>
/// Which endpoint a request is for is decided by our <see cref="EndpointTypeResolver"/> in place of OpenIddict's
/// handler: it must answer as OpenIddict's would, case, trailing slash, path base and all.
/// </summary>
public sealed class EndpointMatchingTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    public static readonly TheoryData<string, string> Requests = new()
    {
        { "https://localhost/", "/connect/token" },
        { "https://localhost/", "/connect/token/" },
        { "https://localhost/", "/CONNECT/Token" },
        { "https://localhost/", "/connect/tokens" },
        { "https://localhost/", "/connect/toke" },
        { "https://localhost/", "/connect" },
        { "https://localhost/", "/" },
        { "https://localhost/", "/connect/authorize?client_id=a&redirect_uri=https%3A%2F%2Fapp" },
        { "https://localhost/", "/.well-known/openid-configuration" },
        { "https://localhost/", "/.well-known/jwks/" },
        { "https://localhost/", "/connect/verify" },
        { "https://localhost/", "/connect//token" },
        { "https://localhost/", "/other/connect/token" },
        { "https://localhost/", "/connect/token%2F" },
        { "https://localhost/base", "/base/connect/token" },
        { "https://localhost/base/", "/base/connect/introspect/" },
        { "https://localhost/base", "/connect/token" },
        { "https://localhost/base", "/basement/connect/token" },
        { "https://localhost/Base", "/base/connect/userinfo" },
        { "https://localhost:8443/", "/connect/revoke" },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task Ours_finds_the_same_endpoint_as_OpenIddicts_handler(string baseUri, string path)
    {
        var options = server.Factory.Services.GetRequiredService<IOptionsMonitor<OpenIddictServerOptions>>().CurrentValue;
        var requestUri = new Uri(new Uri(baseUri).GetLeftPart(UriPartial.Authority) + path);

        var stock = Context(options, baseUri, requestUri);
        await new InferEndpointType().HandleAsync(stock);
        var ours = Context(options, baseUri, requestUri);
        await new EndpointTypeResolver().HandleAsync(ours);

        Assert.Equal(stock.EndpointType, ours.EndpointType);
    }

    [Fact]
    public async Task The_token_endpoint_answers_whatever_the_case_and_with_a_trailing_slash_and_nothing_else_is_it()
    {
        var client = await server.CreateConfidentialClientAsync();
        var http = server.CreateClient();

        foreach (var path in new[] { "/connect/token", "/connect/token/", "/CONNECT/Token" })
        {
            var response = await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!, tokenEndpoint: path);
            var json = await OAuth.ReadJsonAsync(response);
            Assert.True(response.StatusCode == HttpStatusCode.OK && json.TryGetProperty("access_token", out _), $"{path}: {json}");
        }

        var near = await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!, tokenEndpoint: "/connect/tokens");
        Assert.NotEqual(HttpStatusCode.OK, near.StatusCode);
        Assert.DoesNotContain("access_token", await near.Content.ReadAsStringAsync());
    }

    private static ProcessRequestContext Context(OpenIddictServerOptions options, string baseUri, Uri requestUri) =>
        new(new OpenIddictServerTransaction { Options = options, Logger = NullLogger.Instance })
        {
            BaseUri = new Uri(baseUri),
            RequestUri = requestUri,
        };
}
