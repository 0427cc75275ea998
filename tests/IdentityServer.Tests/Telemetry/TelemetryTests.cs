using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace IdentityServer.Tests.Telemetry;

/// <summary>
/// The server's metrics, read the way an operator's pipeline reads them (an OpenTelemetry exporter, here in memory, on a
/// second instance on the fixture's database): counters move with token requests, errors and sign-ins.
/// </summary>
public abstract class TelemetryTests<TFixture>(TFixture server) : IAsyncLifetime where TFixture : ServerFixture
{
    private readonly List<MetricSnapshot> _exported = [];
    private WebApplicationFactory<Program>? _instrumented;

    public Task InitializeAsync()
    {
        if (server.UnavailableReason is null)
        {
            _instrumented = server.Factory.WithWebHostBuilder(web => web.ConfigureTestServices(services =>
                services.ConfigureOpenTelemetryMeterProvider(metrics => metrics.AddInMemoryExporter(_exported,
                    reader => reader.TemporalityPreference = MetricReaderTemporalityPreference.Cumulative))));
            _ = _instrumented.Server;
        }

        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_instrumented is not null)
        {
            await _instrumented.DisposeAsync();
        }
    }

    private HttpClient Http => _instrumented!.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

    /// <summary>The current value of a counter for the points whose tags include all of <paramref name="tags"/>.</summary>
    private long Counter(string name, params (string Key, string Value)[] tags)
    {
        _exported.Clear();
        _instrumented!.Services.GetRequiredService<MeterProvider>().ForceFlush();
        var total = 0L;
        foreach (var snapshot in _exported.Where(m => m.Name == name))
        {
            foreach (var point in snapshot.MetricPoints)
            {
                var pointTags = TagsOf(point);
                if (tags.All(t => pointTags.TryGetValue(t.Key, out var v) && v == t.Value))
                {
                    total += point.GetSumLong();
                }
            }
        }

        return total;
    }

    private long HistogramCount(string name, params (string Key, string Value)[] tags)
    {
        _exported.Clear();
        _instrumented!.Services.GetRequiredService<MeterProvider>().ForceFlush();
        return _exported.Where(m => m.Name == name).SelectMany(m => m.MetricPoints)
            .Where(p => tags.All(t => TagsOf(p).TryGetValue(t.Key, out var v) && v == t.Value))
            .Sum(p => p.GetHistogramCount());
    }

    private static Dictionary<string, string?> TagsOf(MetricPoint point)
    {
        var tags = new Dictionary<string, string?>();
        foreach (var tag in point.Tags)
        {
            tags[tag.Key] = tag.Value?.ToString();
        }

        return tags;
    }

    /// <summary>Anyone may register clients (when registration is open): theirs share one series rather than each adding one.</summary>
    [SkippableFact]
    public async Task Tokens_of_self_registered_clients_are_counted_under_one_client_id_value()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.ClientId = "dcr-" + Guid.NewGuid().ToString("N"));
        var before = Counter("identityserver.tokens.issued", ("grant_type", "client_credentials"), ("client_id", "(self-registered)"), ("token_type", "access_token"));

        var response = await HttpProtocol.ClientCredentialsAsync(Http, client.ClientId, client.ClientSecret!);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Eventually.TrueAsync(() => Task.FromResult(
            Counter("identityserver.tokens.issued", ("grant_type", "client_credentials"), ("client_id", "(self-registered)"), ("token_type", "access_token")) == before + 1),
            TimeSpan.FromSeconds(10), "the issued tokens counter to count the token as a self-registered client's");
        Assert.Equal(0, Counter("identityserver.tokens.issued", ("grant_type", "client_credentials"), ("client_id", client.ClientId), ("token_type", "access_token")));
    }

    [SkippableFact]
    public async Task A_token_request_moves_the_issued_tokens_counter_for_its_grant_type_and_client()
    {
        var client = await server.CreateConfidentialClientAsync();
        var before = Counter("identityserver.tokens.issued", ("grant_type", "client_credentials"), ("client_id", client.ClientId), ("token_type", "access_token"));

        var response = await HttpProtocol.ClientCredentialsAsync(Http, client.ClientId, client.ClientSecret!);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Eventually.TrueAsync(() => Task.FromResult(
            Counter("identityserver.tokens.issued", ("grant_type", "client_credentials"), ("client_id", client.ClientId), ("token_type", "access_token")) == before + 1),
            TimeSpan.FromSeconds(10), "the issued tokens counter to count the token");
        await Eventually.TrueAsync(() => Task.FromResult(
            HistogramCount("identityserver.endpoint.duration", ("endpoint", "token"), ("http.response.status_code", "200")) >= 1),
            TimeSpan.FromSeconds(10), "the token endpoint's latency to be recorded");
    }

    [SkippableFact]
    public async Task A_stored_token_entry_is_recorded_as_a_committed_batch_of_the_group_commit_writer()
    {
        var client = await server.CreateConfidentialClientAsync();
        var batches = HistogramCount("identityserver.token_writes.batch_size", ("outcome", "committed"));

        var response = await HttpProtocol.ClientCredentialsAsync(Http, client.ClientId, client.ClientSecret!);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Eventually.TrueAsync(() => Task.FromResult(
            HistogramCount("identityserver.token_writes.batch_size", ("outcome", "committed")) > batches
            && HistogramCount("identityserver.token_writes.duration", ("outcome", "committed")) > 0),
            TimeSpan.FromSeconds(10), "the writer's batch size and commit time to be recorded");
    }

    [SkippableFact]
    public async Task A_refused_token_request_moves_the_errors_counter_for_its_error_code()
    {
        var client = await server.CreateConfidentialClientAsync();
        var before = Counter("identityserver.token.errors", ("error", "invalid_client"), ("grant_type", "client_credentials"));

        var response = await HttpProtocol.ClientCredentialsAsync(Http, client.ClientId, client.ClientSecret + "-wrong");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        // Other tests in the process may be refused too (instruments of one name are one stream per process): at least ours.
        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.token.errors", ("error", "invalid_client"), ("grant_type", "client_credentials")) >= before + 1),
            TimeSpan.FromSeconds(10), "the token errors counter to count the refusal");
    }

    /// <summary>
    /// Errors the token endpoint answers before OpenIddict sees the request (a body that cannot be read, the rate limit;
    /// also the 503 of a database outage) are counted like OpenIddict's, so an outage or a flood shows in the counter.
    /// </summary>
    [SkippableFact]
    public async Task Token_requests_refused_before_OpenIddict_move_the_errors_counter_too()
    {
        var malformed = Counter("identityserver.token.errors", ("error", "invalid_request"), ("grant_type", ""));
        using var unreadable = new HttpRequestMessage(HttpMethod.Post, "/connect/token") { Content = new StringContent("grant_type=client_credentials") };
        unreadable.Content.Headers.Remove("Content-Type");
        unreadable.Content.Headers.TryAddWithoutValidation("Content-Type", "application/x-www-form-urlencoded; charset=\"");
        Assert.Equal(HttpStatusCode.BadRequest, (await Http.SendAsync(unreadable)).StatusCode);
        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.token.errors", ("error", "invalid_request"), ("grant_type", "")) >= malformed + 1),
            TimeSpan.FromSeconds(10), "the token errors counter to count the unreadable body");

        // Instruments are one stream per process, so this exporter also sees a second server's counts.
        await using var limited = server.StartServer(new Dictionary<string, string?> { ["RateLimiting:PerClient:PermitLimit"] = "1" });
        var http = limited.CreateClient(new() { BaseAddress = TestServerFactory.Authority });
        var client = await server.CreateConfidentialClientAsync();
        var rateLimited = Counter("identityserver.token.errors", ("error", "temporarily_unavailable"), ("grant_type", "client_credentials"));
        Assert.Equal(HttpStatusCode.OK, (await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!)).StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, (await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!)).StatusCode);
        await Eventually.TrueAsync(() => Task.FromResult(
            Counter("identityserver.token.errors", ("error", "temporarily_unavailable"), ("grant_type", "client_credentials")) >= rateLimited + 1),
            TimeSpan.FromSeconds(10), "the token errors counter to count the rate-limited request");
    }

    [SkippableFact]
    public async Task Sign_ins_are_counted_by_result()
    {
        var user = await server.CreateUserAsync();
        var successes = Counter("identityserver.sign_ins", ("result", "success"));
        var failures = Counter("identityserver.sign_ins", ("result", "failure"));

        var browser = new Browser(new() { [TestServerFactory.Authority.Host] = _instrumented!.Server.CreateHandler() });
        await OAuth.SignInAsync(browser, await browser.NavigateAsync("https://localhost/account/login"), user with { Password = user.Password + "x" }, stopAt: _ => true);
        await OAuth.SignInAsync(browser, await browser.NavigateAsync("https://localhost/account/login"), user, stopAt: _ => true);

        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.sign_ins", ("result", "failure")) >= failures + 1),
            TimeSpan.FromSeconds(10), "the failed sign-in to be counted");
        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.sign_ins", ("result", "success")) >= successes + 1),
            TimeSpan.FromSeconds(10), "the successful sign-in to be counted");
    }

    [SkippableFact]
    public async Task Pruned_rows_are_counted_by_kind()
    {
        var user = await server.CreateUserAsync();
        var before = Counter("identityserver.pruned", ("kind", "session"));
        var assertionsBefore = Counter("identityserver.pruned", ("kind", "client_assertion"));
        var proofsBefore = Counter("identityserver.pruned", ("kind", "dpop_proof"));
        await using (var scope = _instrumented!.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>();
            var longAgo = DateTime.UtcNow.AddDays(-1);
            db.Add(new IdentityServer.Accounts.UserSession
            {
                Id = Guid.NewGuid().ToString("N"), UserId = user.Id, Methods = "pwd", SignedInAt = longAgo, LastSeenAt = longAgo, ExpiresAt = longAgo.AddHours(10),
            });
            db.Add(new IdentityServer.Clients.UsedClientAssertion { ClientId = Unique.Name("pkj"), JtiHash = new string('0', 64), ExpiresAt = longAgo });
            db.Add(new IdentityServer.Dpop.UsedDpopProof { Thumbprint = Unique.Name("jkt").PadRight(43, 'x'), JtiHash = new string('0', 64), ExpiresAt = longAgo });
            await db.SaveChangesAsync();
            await scope.ServiceProvider.GetRequiredService<IdentityServer.Jobs.TokenPruner>().PruneAsync(CancellationToken.None);
        }

        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.pruned", ("kind", "session")) >= before + 1),
            TimeSpan.FromSeconds(10), "the pruned session row to be counted");
        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.pruned", ("kind", "client_assertion")) >= assertionsBefore + 1),
            TimeSpan.FromSeconds(10), "the pruned client assertion record to be counted");
        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.pruned", ("kind", "dpop_proof")) >= proofsBefore + 1),
            TimeSpan.FromSeconds(10), "the pruned DPoP proof record to be counted");
    }

    [SkippableFact]
    public async Task A_delivered_back_channel_logout_token_is_counted_as_delivered()
    {
        await using var receiver = await IdentityServer.Tests.Logout.LogoutReceiver.StartAsync();
        var client = await server.CreateClientAsync(c =>
        {
            c.ClientSecret = Unique.Secret();
            c.TokenEndpointAuthMethod = "client_secret_basic";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
            c.ConsentType = "implicit";
            c.BackChannelLogoutUri = receiver.Url("/counted");
        });
        var user = await server.CreateUserAsync();
        var delivered = Counter("identityserver.logout_tokens", ("result", "delivered"));
        var browser = new Browser(new() { [TestServerFactory.Authority.Host] = _instrumented!.Server.CreateHandler() });
        var answer = await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), user);
        Assert.True(answer.ContainsKey("code"), string.Join(", ", answer));

        await browser.SubmitAsync(await browser.NavigateAsync("https://localhost/account/logout"));

        await Eventually.TrueAsync(() => Task.FromResult(receiver.TokensAt("/counted").Count == 1), TimeSpan.FromSeconds(15), "the logout token");
        await Eventually.TrueAsync(() => Task.FromResult(Counter("identityserver.logout_tokens", ("result", "delivered")) >= delivered + 1),
            TimeSpan.FromSeconds(10), "the delivered logout token to be counted");
    }
}

public sealed class SqliteTelemetryTests(SqliteServerFixture server) : TelemetryTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlTelemetryTests(PostgreSqlServerFixture server) : TelemetryTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;

/// <summary>The Prometheus scrape endpoint is off unless enabled, and never on the public listener without saying so.</summary>
public sealed class PrometheusTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    [Fact]
    public async Task Metrics_are_not_served_by_default()
    {
        var response = await server.CreateClient().GetAsync("/metrics");
        Assert.NotEqual(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public void Enabling_Prometheus_without_a_listener_of_its_own_or_an_explicit_public_opt_in_stops_the_start()
    {
        var error = Assert.ThrowsAny<Exception>(() => server.StartServer(new Dictionary<string, string?> { ["OpenTelemetry:Prometheus:Enabled"] = "true" }));
        Assert.Contains("OpenTelemetry:Prometheus:Url", error.GetBaseException().Message);
    }

    /// <summary>On a listener of its own, the scrape answers there only: a Host header naming that port does not reach it from the public one.</summary>
    [Fact]
    public async Task On_its_own_listener_the_scrape_is_not_reached_from_the_public_one_whatever_the_Host_header()
    {
        var metricsPort = FreePort();
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:Url"] = $"http://127.0.0.1:{metricsPort}",
        });
        using var http = new HttpClient();

        using var spoofed = new HttpRequestMessage(HttpMethod.Get, new Uri(process.BaseAddress, "/metrics"));
        spoofed.Headers.Host = $"127.0.0.1:{metricsPort}";
        using var fromPublic = await http.SendAsync(spoofed);
        using var fromOwn = await http.GetAsync($"http://127.0.0.1:{metricsPort}/metrics");

        Assert.NotEqual(HttpStatusCode.OK, fromPublic.StatusCode);
        Assert.Equal(HttpStatusCode.OK, fromOwn.StatusCode);
    }

    private static int FreePort() => ServerProcess.FreePort();

    /// <summary>The container images' way (ASPNETCORE_HTTP_PORTS, no URLs): the public port stays, the metrics listener is added.</summary>
    [Fact]
    public async Task With_the_public_port_from_http_ports_both_listeners_answer()
    {
        var publicPort = FreePort();
        var metricsPort = FreePort();
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ASPNETCORE_URLS"] = null,
            ["ASPNETCORE_HTTP_PORTS"] = publicPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:Url"] = $"http://127.0.0.1:{metricsPort}",
        }, port: publicPort);

        await AssertBothListenersAnswerAsync(process, metricsPort);
    }

    /// <summary>Kestrel ignores the server URLs when its configuration names endpoints: the metrics listener is one more endpoint.</summary>
    [Fact]
    public async Task With_the_public_listener_a_configured_Kestrel_endpoint_both_listeners_answer()
    {
        var publicPort = FreePort();
        var metricsPort = FreePort();
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ASPNETCORE_URLS"] = null,
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{publicPort}",
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:Url"] = $"http://127.0.0.1:{metricsPort}",
        }, port: publicPort);

        await AssertBothListenersAnswerAsync(process, metricsPort);
    }

    private static async Task AssertBothListenersAnswerAsync(ServerProcess process, int metricsPort)
    {
        using var http = process.CreateClient();
        using var discovery = await http.GetAsync("/.well-known/openid-configuration");
        using var scrape = await http.GetAsync($"http://127.0.0.1:{metricsPort}/metrics");

        Assert.True(discovery.StatusCode == HttpStatusCode.OK, $"Discovery on the public port: {discovery.StatusCode}.\n{process.Output}");
        Assert.True(scrape.StatusCode == HttpStatusCode.OK, $"/metrics on the metrics port: {scrape.StatusCode}.\n{process.Output}");
    }

    /// <summary>The metrics listener is not a second public listener: no discovery (with its own address as issuer), no tokens.</summary>
    [Fact]
    public async Task The_metrics_listener_answers_only_metrics()
    {
        var metricsPort = FreePort();
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:Url"] = $"http://127.0.0.1:{metricsPort}",
        });
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri($"http://127.0.0.1:{metricsPort}/") };

        using var discovery = await http.GetAsync("/.well-known/openid-configuration");
        // Development's demo client (appsettings.Development.json), which the public listener gives a token.
        using var token = await HttpProtocol.ClientCredentialsAsync(http, "demo-machine", "demo-machine-secret-change-me", tokenEndpoint: "/connect/token");
        using var publicToken = await HttpProtocol.ClientCredentialsAsync(process.CreateClient(), "demo-machine", "demo-machine-secret-change-me");
        using var login = await http.GetAsync("/account/login");
        using var admin = await http.GetAsync("/api/admin/clients");
        using var scrape = await http.GetAsync("/metrics");
        using var posted = await http.PostAsync("/metrics", null);
        // Scraped through a mapped port (a container's, a Kubernetes Service's), the Host header names another port.
        using var mapped = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        mapped.Headers.Host = "metrics.internal:9100";
        using var throughMappedPort = await http.SendAsync(mapped);
        using var publicDiscovery = await process.CreateClient().GetAsync("/.well-known/openid-configuration");

        Assert.Equal(HttpStatusCode.NotFound, discovery.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, token.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, login.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, admin.StatusCode);
        Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, posted.StatusCode);
        Assert.Equal(HttpStatusCode.OK, throughMappedPort.StatusCode);
        Assert.Equal(HttpStatusCode.OK, publicDiscovery.StatusCode);
        Assert.Equal(HttpStatusCode.OK, publicToken.StatusCode);
    }

    public static readonly TheoryData<string> MalformedUrls = ["notaurl", "/metrics", "ftp://127.0.0.1:9465", "http://127.0.0.1:9465/scrape", "http://127.0.0.1:0", "http://127.0.0.1"];

    [Theory]
    [MemberData(nameof(MalformedUrls))]
    public async Task A_malformed_metrics_url_stops_the_process_with_one_clear_line(string url)
    {
        await using var process = ServerProcess.Start(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:Url"] = url,
        });

        await StartupErrors.AssertStopsWithOneLineAsync(process, "OpenTelemetry:Prometheus:Url", url);
    }

    [Fact]
    public async Task A_metrics_url_on_the_public_port_stops_the_process_with_one_clear_line()
    {
        var port = FreePort();
        await using var process = ServerProcess.Start(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:Url"] = $"http://127.0.0.1:{port}",
        }, port: port);

        await StartupErrors.AssertStopsWithOneLineAsync(process, "OpenTelemetry:Prometheus:Url", $"port {port}");
    }

    [Fact]
    public async Task Enabled_on_the_public_listener_the_scrape_shows_the_server_s_counters()
    {
        await using var enabled = server.StartServer(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:OnPublicListener"] = "true",
        });
        var attached = new AttachedServer(enabled, server.Provider);
        var client = await attached.CreateConfidentialClientAsync();
        Assert.Equal(HttpStatusCode.OK, (await HttpProtocol.ClientCredentialsAsync(attached.CreateClient(), client.ClientId, client.ClientSecret!)).StatusCode);

        var scrape = await attached.CreateClient().GetStringAsync("/metrics");

        Assert.Contains("identityserver_tokens_issued", scrape);
        Assert.Contains(client.ClientId, scrape);
    }

    /// <summary>A scraper reads (GET, HEAD); any other method is refused rather than answered with the metrics.</summary>
    [Fact]
    public async Task The_scrape_answers_GET_and_HEAD_and_refuses_other_methods_with_405()
    {
        await using var enabled = server.StartServer(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:OnPublicListener"] = "true",
        });
        using var http = enabled.CreateClient();

        using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/metrics"));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        foreach (var method in new[] { "POST", "PUT", "DELETE", "PATCH", "OPTIONS" })
        {
            using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), "/metrics"));
            Assert.True(response.StatusCode == HttpStatusCode.MethodNotAllowed, $"{method} /metrics: {(int)response.StatusCode}");
            Assert.Equal(["GET", "HEAD"], response.Content.Headers.Allow);
        }
    }
}
