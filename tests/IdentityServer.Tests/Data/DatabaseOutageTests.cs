using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Data;

/// <summary>
/// The database goes away under a running server and comes back: protocol endpoints answer 503 with OAuth error
/// JSON, pages the friendly error page, liveness stays up, readiness goes down, and the server recovers by itself.
/// Uses a PostgreSQL cluster of its own, since it stops it.
/// </summary>
public sealed class DatabaseOutageTests : IAsyncLifetime
{
    private PostgreSqlCluster? _cluster;
    private TestServerFactory? _server;

    public async Task InitializeAsync()
    {
        if (!PostgreSqlCluster.IsAvailable)
        {
            return;
        }

        _cluster = await PostgreSqlCluster.StartAsync();
        _server = new TestServerFactory(new Dictionary<string, string?>
        {
            ["Database:Provider"] = "PostgreSql",
            ["ConnectionStrings:IdentityServer"] = await _cluster.CreateDatabaseAsync(),
        });
        _ = _server.Server;
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }

    [SkippableFact]
    public async Task An_outage_answers_503_without_hanging_and_the_server_recovers_by_itself()
    {
        Skip.IfNot(PostgreSqlCluster.IsAvailable, PostgreSqlCluster.InstallHint);
        var fixture = new AttachedServer(_server!, IdentityServer.Data.DatabaseProvider.PostgreSql);
        var client = await fixture.CreateConfidentialClientAsync(c => c.Scope = null);
        var http = _server!.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });
        // A hang would show as this timeout failing the test; the server must answer well within it.
        http.Timeout = TimeSpan.FromSeconds(20);
        var tokenEndpoint = await fixture.EndpointAsync("token_endpoint");
        // A client this server has not looked up yet: clients already read are served from memory for a while,
        // so only an unread one makes the authorization endpoint need the database.
        var unread = await fixture.CreateConfidentialClientAsync(c => c.Scope = null);
        var authorizeUrl = await OAuth.AuthorizeUrlAsync(fixture, unread.ClientId, "openid", Pkce.Create());
        var issued = await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!, tokenEndpoint: tokenEndpoint);
        Assert.Equal(HttpStatusCode.OK, issued.StatusCode);
        var accessToken = (await OAuth.ReadJsonAsync(issued)).GetProperty("access_token").GetString()!;
        // Token lookups keep connections of their own open (PreparedTokenReader): they must fail and recover like the rest.
        Task<HttpResponseMessage> IntrospectAsync() =>
            OAuth.PostFormAsync(fixture, "introspection_endpoint", new Dictionary<string, string> { ["token"] = accessToken }, client, http);

        Assert.True((await OAuth.ReadJsonAsync(await IntrospectAsync())).GetProperty("active").GetBoolean());

        await _cluster!.StopServerAsync();

        var token = await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!, tokenEndpoint: tokenEndpoint);
        var tokenBody = await token.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, token.StatusCode);
        Assert.Equal("temporarily_unavailable", System.Text.Json.JsonDocument.Parse(tokenBody).RootElement.GetProperty("error").GetString());
        Assert.DoesNotContain("   at ", tokenBody);

        var introspection = await IntrospectAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, introspection.StatusCode);
        Assert.Equal("temporarily_unavailable", (await OAuth.ReadJsonAsync(introspection)).GetProperty("error").GetString());

        var page = await http.GetAsync(authorizeUrl);
        var pageBody = await page.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, page.StatusCode);
        Assert.Contains("text/html", page.Content.Headers.ContentType?.ToString());
        Assert.Contains("request id", pageBody);
        Assert.DoesNotContain("   at ", pageBody);
        Assert.DoesNotContain("Exception", pageBody);

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/health/ready")).StatusCode);

        await _cluster.StartServerAsync();

        // Recovery needs no restart: the first requests after the database is back may still meet a broken pooled
        // connection, so wait (bounded) for the condition rather than for a fixed time.
        await Eventually.TrueAsync(async () =>
            (await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!, tokenEndpoint: tokenEndpoint)).StatusCode == HttpStatusCode.OK,
            TimeSpan.FromSeconds(30), "the token endpoint to work again");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);
        await Eventually.TrueAsync(async () =>
            await IntrospectAsync() is { StatusCode: HttpStatusCode.OK } response && (await OAuth.ReadJsonAsync(response)).GetProperty("active").GetBoolean(),
            TimeSpan.FromSeconds(30), "the token issued before the outage to introspect as active again");
    }
}
