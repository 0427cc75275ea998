using System.Net;
using IdentityServer.Accounts;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// The developer configuration (the repository's top-level appsettings.Development.json) and what the environment
/// changes: plain http works in Development only.
/// </summary>
public abstract class EnvironmentTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private static readonly WebApplicationFactoryClientOptions Http = new() { AllowAutoRedirect = false, BaseAddress = new Uri("http://localhost/") };

    [SkippableFact]
    public void The_server_reads_the_repository_development_settings_file()
    {
        // The server project copies the top-level file next to its binaries, where Development runs read it.
        var copy = Path.Combine(AppContext.BaseDirectory, "appsettings.Development.json");

        Assert.True(File.Exists(copy), $"{copy} is missing: the server project no longer copies the repository's development settings.");
        Assert.Equal(File.ReadAllText(Repository.DevelopmentSettingsPath), File.ReadAllText(copy));
    }

    [SkippableFact]
    public async Task In_Development_the_repository_seed_is_valid_and_seeds_the_demo_clients_scope_and_user()
    {
        await using var development = server.StartServer(environment: "Development");
        await using var scope = development.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        var seed = Repository.DevelopmentSeed();

        foreach (var clientId in new[] { "demo-spa", "demo-web", "demo-machine", "demo-api", "demo-device" })
        {
            Assert.NotNull(await applications.FindByClientIdAsync(clientId));
        }

        Assert.NotNull(await scopes.FindByNameAsync("api"));
        var seededUser = seed.GetProperty("Users").EnumerateArray().Single(u => u.GetProperty("user_name").GetString() == "alice");
        var alice = await users.FindByNameAsync("alice");
        Assert.NotNull(alice);
        Assert.True(await users.CheckPasswordAsync(alice, seededUser.GetProperty("password").GetString()!));
        Assert.True(await users.IsInRoleAsync(alice, "admin"));
    }

    [SkippableFact]
    public async Task In_Development_the_demo_machine_client_gets_a_token_over_plain_http()
    {
        var machine = Repository.DevelopmentClient("demo-machine");
        await using var development = server.StartServer(environment: "Development");
        var http = development.CreateClient(Http);

        var tokenEndpoint = await HttpProtocol.EndpointAsync(http, "token_endpoint");
        var response = await HttpProtocol.ClientCredentialsAsync(http, "demo-machine", machine.GetProperty("client_secret").GetString()!, "api", tokenEndpoint);

        Assert.StartsWith("http://", tokenEndpoint);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal("https://localhost:7001", Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("aud").GetString());
    }

    /// <summary>The demo API, whose audience is its URL, introspects the machine client's token for it (its audience alias).</summary>
    [SkippableFact]
    public async Task In_Development_the_demo_api_introspects_a_token_for_its_url()
    {
        await using var development = server.StartServer(environment: "Development");
        var http = development.CreateClient(Http);
        var issued = await HttpProtocol.ClientCredentialsAsync(http, "demo-machine",
            Repository.DevelopmentClient("demo-machine").GetProperty("client_secret").GetString()!, "api", await HttpProtocol.EndpointAsync(http, "token_endpoint"));
        var token = (await OAuth.ReadJsonAsync(issued)).GetProperty("access_token").GetString()!;

        using var request = new HttpRequestMessage(HttpMethod.Post, await HttpProtocol.EndpointAsync(http, "introspection_endpoint"))
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = token }),
        };
        request.Headers.Authorization = OAuth.BasicAuth(new TestClient("demo-api", Repository.DevelopmentClient("demo-api").GetProperty("client_secret").GetString(), new()));
        var introspected = await OAuth.ReadJsonAsync(await http.SendAsync(request));

        Assert.True(introspected.GetProperty("active").GetBoolean(), introspected.ToString());
        Assert.Equal("demo-machine", introspected.GetProperty("client_id").GetString());
    }

    [SkippableTheory]
    [InlineData("Testing")]
    [InlineData("Production")]
    public async Task Outside_Development_a_token_request_over_plain_http_is_refused_with_an_OAuth_error(string environment)
    {
        var client = await server.CreateConfidentialClientAsync();
        await using var host = server.StartServer(environment: environment);
        var https = host.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });
        var tokenEndpoint = await HttpProtocol.EndpointAsync(https, "token_endpoint");

        // The same request over https succeeds, so the scheme is the only reason for the refusal.
        var overHttps = await HttpProtocol.ClientCredentialsAsync(https, client.ClientId, client.ClientSecret!, tokenEndpoint: tokenEndpoint);
        Assert.Equal(HttpStatusCode.OK, overHttps.StatusCode);

        var httpEndpoint = new UriBuilder(tokenEndpoint) { Scheme = Uri.UriSchemeHttp, Port = -1 }.Uri.ToString();
        var overHttp = await HttpProtocol.ClientCredentialsAsync(host.CreateClient(Http), client.ClientId, client.ClientSecret!, tokenEndpoint: httpEndpoint);
        var json = await OAuth.ReadJsonAsync(overHttp);

        Assert.Equal(HttpStatusCode.BadRequest, overHttp.StatusCode);
        Assert.Equal("invalid_request", json.GetProperty("error").GetString());
        Assert.Contains("HTTPS", json.GetProperty("error_description").GetString());
        Assert.False(json.TryGetProperty("access_token", out _));
    }
}

public sealed class SqliteEnvironmentTests(SqliteServerFixture server)
    : EnvironmentTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlEnvironmentTests(PostgreSqlServerFixture server) : EnvironmentTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
