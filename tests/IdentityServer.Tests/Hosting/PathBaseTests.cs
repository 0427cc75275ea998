using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Hosting;
using IdentityServer.Shared;
using IdentityServer.Tests.Admin;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using OpenTelemetry.Trace;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// Published under a path (<c>Hosting:PathBase</c>) behind a proxy that forwards it as it is: the protocol endpoints,
/// the issuer and every link, form and redirect of the pages stay under it, the cookies keep the <c>__Host-</c> rules, and
/// nothing answers outside it. A hosting matter, so on SQLite only.
/// </summary>
public sealed class PathBaseTests(SqliteServerFixture fixture) : IClassFixture<SqliteServerFixture>
{
    private const string PathBase = "/identity";

    [SkippableFact]
    public async Task Under_a_path_base_the_protocol_and_every_page_stay_under_it()
    {
        await using var factory = fixture.StartServer(new Dictionary<string, string?>
        {
            ["Hosting:PathBase"] = PathBase,
            ["Accounts:AllowRegistration"] = "true",
        });
        var server = new AttachedServer(factory, fixture.Provider, PathBase);
        var http = server.CreateClient();

        // Discovery: the issuer and every endpoint under the path; nothing at the root.
        var discovery = await http.GetFromJsonAsync<JsonElement>($"{PathBase}/.well-known/openid-configuration");
        var issuer = discovery.GetProperty("issuer").GetString()!;
        Assert.Equal($"https://localhost{PathBase}", issuer.TrimEnd('/'));
        foreach (var endpoint in discovery.EnumerateObject().Where(p => p.Name.EndsWith("_endpoint", StringComparison.Ordinal) || p.Name == "jwks_uri"))
        {
            Assert.StartsWith($"https://localhost{PathBase}/", endpoint.Value.GetString());
        }

        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/.well-known/openid-configuration")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/account/login")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"{PathBase}/health")).StatusCode);

        // The code flow through the login page, with tokens naming the issuer.
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var user = await server.CreateUserAsync(null, "admin");
        var browser = server.CreateBrowser();
        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid offline_access", pkce), OAuth.IsApp);
        Assert.Equal($"{PathBase}/account/login", login.Uri.AbsolutePath);
        AssertLinksUnderPathBase(login);
        var callback = await OAuth.SignInAsync(browser, login, user);
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce);
        var idToken = tokens.GetProperty("id_token").GetString()!;
        Assert.Equal(issuer, Jwt.Payload(idToken).GetProperty("iss").GetString());
        var refreshed = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.True(refreshed.IsSuccessStatusCode, await refreshed.Content.ReadAsStringAsync());

        // __Host- cookies must have the path "/", whatever the path base (a browser drops them otherwise).
        var cookies = browser.Cookies.GetAllCookies().Where(c => c.Name.StartsWith("__Host-", StringComparison.Ordinal)).ToList();
        Assert.Contains(cookies, c => c.Name == "__Host-idsrv.session");
        Assert.All(cookies, c => Assert.Equal("/", c.Path));

        // Every page of the account and the administration: links, forms, scripts and style sheets under the path.
        string[] pages =
        [
            "/", "/account", "/account/password", "/account/email", "/account/two-factor", "/account/passkeys", "/account/apps", "/account/sessions", "/account/personal-data",
            "/admin", "/admin/clients", "/admin/clients/new", "/admin/clients/new?kind=spa", $"/admin/clients/{client.ClientId}",
            $"/admin/clients/{client.ClientId}/secret", $"/admin/clients/{client.ClientId}/delete", "/admin/scopes", "/admin/scopes/new",
            "/admin/users", "/admin/users/new", $"/admin/users/{user.Id}", $"/admin/users/{user.Id}/password", "/admin/roles", "/admin/keys",
            "/admin/audit",
        ];
        foreach (var path in pages)
        {
            var page = await browser.NavigateAsync(AdminPages.Url(PathBase + path), stopAt: _ => true);
            Assert.True(page.Status == HttpStatusCode.OK, $"{(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
            AssertLinksUnderPathBase(page);
        }

        // A form's redirect stays under the path too (a new scope goes back to the list).
        var newScope = await browser.NavigateAsync(AdminPages.Url($"{PathBase}/admin/scopes/new"));
        var created = await browser.SubmitAsync(newScope, "form.wide-form", new Dictionary<string, string[]> { ["Form.Name"] = [Unique.Name("scope")] });
        Assert.Equal($"{PathBase}/admin/scopes", created.Uri.AbsolutePath);

        // Pages for someone signed out: registration, password reset, and RP-initiated logout's signed-out page.
        var anonymous = server.CreateBrowser();
        foreach (var path in new[] { "/account/login", "/account/register", "/account/forgot-password" })
        {
            var page = await anonymous.NavigateAsync(AdminPages.Url(PathBase + path));
            Assert.True(page.Status == HttpStatusCode.OK, $"{(int)page.Status} at {page.Uri}");
            AssertLinksUnderPathBase(page);
        }

        var signedOut = await browser.NavigateAsync(QueryHelpers.AddQueryString(await server.EndpointAsync("end_session_endpoint"),
            new Dictionary<string, string?> { ["id_token_hint"] = idToken }));
        Assert.Equal($"{PathBase}/account/signed-out", signedOut.Uri.AbsolutePath);
        AssertLinksUnderPathBase(signedOut);
    }

    /// <summary>
    /// What is written by hand (the rate limit's page, the error page) and the admin API's Location stay under the path
    /// too; health probes may come to the root; the path in another case is not served (it would be another issuer); a
    /// return URL outside the path (another application on the host) is not followed.
    /// </summary>
    [SkippableFact]
    public async Task Answers_written_by_hand_probes_other_spellings_and_return_urls_keep_to_the_path_base()
    {
        await using var factory = fixture.StartServer(new Dictionary<string, string?>
        {
            ["Hosting:PathBase"] = PathBase,
            ["RateLimiting:PerIp:PermitLimit"] = "2",
            ["RateLimiting:PerIp:Window"] = "00:10:00",
        });
        var server = new AttachedServer(factory, fixture.Provider, PathBase);
        var http = server.CreateClient();

        var admin = await AdminApiCalls.AdminAsync(server);
        var created = await admin.PostJsonAsync($"{PathBase}/api/admin/scopes", AdminApiCalls.Json(new { name = Unique.Name("scope") }));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.StartsWith($"{PathBase}/api/admin/scopes/", created.Headers.Location!.OriginalString);

        var malformed = new StringContent("x");
        malformed.Headers.ContentType = new("multipart/form-data"); // no boundary: the error page
        var error = await http.PostAsync($"{PathBase}/account/login", malformed);
        Assert.Equal(HttpStatusCode.BadRequest, error.StatusCode);
        AssertLinksUnderPathBase(await PageAsync(error));

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/IDENTITY/.well-known/openid-configuration")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/IDENTITY/account/login")).StatusCode);

        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var login = await browser.NavigateAsync(AdminPages.Url($"{PathBase}/account/login?returnUrl=%2Fother-app%2Fanything"));
        var signedIn = await OAuth.SignInAsync(browser, login, user, stopAt: _ => true);
        Assert.Equal($"{PathBase}/", signedIn.RedirectTarget!.AbsolutePath);

        HttpResponseMessage limited = null!;
        for (var i = 0; i < 3; i++)
        {
            limited = await http.PostAsync($"{PathBase}/account/login", new FormUrlEncodedContent([new("Input.UserName", "x"), new("Input.Password", "y")]));
        }

        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        AssertLinksUnderPathBase(await PageAsync(limited));
    }

    private static async Task<BrowserPage> PageAsync(HttpResponseMessage response) =>
        new(response.RequestMessage!.RequestUri!, response, await response.Content.ReadAsStringAsync());

    /// <summary>
    /// A return URL under the path base that leads out of it once a browser resolves its dot segments (plain,
    /// percent-encoded, after a backslash, or app-relative) is another application's page: the login goes home instead.
    /// </summary>
    [SkippableTheory]
    [InlineData("/identity/../other-app/x")]
    [InlineData("/identity/%2e%2e/other-app/x")]
    [InlineData("/identity/..\\other-app")]
    [InlineData("~/../other-app")]
    [InlineData("/identity/./../other-app")]
    public async Task A_return_url_that_leaves_the_path_base_by_dot_segments_is_not_followed(string returnUrl)
    {
        await using var factory = fixture.StartServer(new Dictionary<string, string?> { ["Hosting:PathBase"] = PathBase });
        var server = new AttachedServer(factory, fixture.Provider, PathBase);
        var browser = server.CreateBrowser();
        var login = await browser.NavigateAsync(AdminPages.Url(QueryHelpers.AddQueryString($"{PathBase}/account/login", "returnUrl", returnUrl)));

        var signedIn = await OAuth.SignInAsync(browser, login, await server.CreateUserAsync(), stopAt: _ => true);

        Assert.Equal($"{PathBase}/", signedIn.RedirectTarget!.OriginalString.Replace("https://localhost", "", StringComparison.Ordinal));
    }

    /// <summary>A return URL under the path base is still followed.</summary>
    [SkippableFact]
    public async Task A_return_url_under_the_path_base_is_followed()
    {
        await using var factory = fixture.StartServer(new Dictionary<string, string?> { ["Hosting:PathBase"] = PathBase });
        var server = new AttachedServer(factory, fixture.Provider, PathBase);
        var browser = server.CreateBrowser();
        var login = await browser.NavigateAsync(AdminPages.Url(QueryHelpers.AddQueryString($"{PathBase}/account/login", "returnUrl", $"{PathBase}/account/sessions")));

        var signedIn = await OAuth.SignInAsync(browser, login, await server.CreateUserAsync(), stopAt: _ => true);

        Assert.Equal($"{PathBase}/account/sessions", signedIn.RedirectTarget!.AbsolutePath);
    }

    [SkippableTheory]
    [InlineData("identity", null, "Hosting:PathBase")]
    [InlineData("/identity/", null, "Hosting:PathBase")]
    [InlineData("/id entity", null, "Hosting:PathBase")]
    [InlineData("/identity", "https://id.example.test/", "Tokens:Issuer")]
    [InlineData("/identity", "https://id.example.test/other/", "Tokens:Issuer")]
    public void A_path_base_that_is_not_a_path_or_an_issuer_outside_it_stops_the_start(string pathBase, string? issuer, string named)
    {
        var refused = Assert.ThrowsAny<Exception>(() => fixture.StartServer(new Dictionary<string, string?>
        {
            ["Hosting:PathBase"] = pathBase,
            ["Tokens:Issuer"] = issuer,
        }));

        Assert.Contains(refused.AndItsCauses(), e => e is StartupConfigurationException && e.Message.StartsWith(named, StringComparison.Ordinal));
    }

    /// <summary>
    /// Health probes are left out of traces (they come every few seconds) whether they come under the path base or at the
    /// root: the trace filter sees the request's path before the path base is taken off it.
    /// </summary>
    [SkippableFact]
    public async Task Health_probes_under_the_path_base_and_at_the_root_are_not_traced()
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var traced = new List<System.Diagnostics.Activity>();
        var settings = new Dictionary<string, string?>(fixture.Settings)
        {
            ["Hosting:PathBase"] = PathBase,
            ["OpenTelemetry:Endpoint"] = "http://127.0.0.1:9", // traces are collected only when they have somewhere to go
        };
        await using var factory = new TestServerFactory(settings, testServices: services =>
            services.ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddInMemoryExporter(traced)));
        var http = new AttachedServer(factory, fixture.Provider, PathBase).CreateClient();

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"{PathBase}/health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"{PathBase}/.well-known/jwks")).StatusCode);

        // The requests ran one after the other: once the last one's trace is exported, the probes' would have been.
        bool Traced(string path)
        {
            lock (traced)
            {
                return traced.Any(a => a.GetTagItem("url.path") is string tracedPath && tracedPath == path);
            }
        }

        await Eventually.TrueAsync(() => Task.FromResult(Traced($"{PathBase}/.well-known/jwks")), TimeSpan.FromSeconds(10), "the JWKS request traced");
        Assert.False(Traced($"{PathBase}/health"));
        Assert.False(Traced("/health/ready"));
    }

    /// <summary>Without a path base, an issuer with a path (a proxy that strips it) is the operator's choice, as before: the server starts.</summary>
    [SkippableFact]
    public async Task Without_a_path_base_an_issuer_with_a_path_still_starts()
    {
        await using var factory = fixture.StartServer(new Dictionary<string, string?> { ["Tokens:Issuer"] = "https://id.example.test/identity/" });

        Assert.Equal(HttpStatusCode.OK, (await factory.CreateClient().GetAsync("/health")).StatusCode);
    }

    /// <summary>Every address the page's markup leads to on this host (root-relative) is under the path base.</summary>
    private static void AssertLinksUnderPathBase(BrowserPage page)
    {
        var addresses = page.Document.QuerySelectorAll("a[href], form[action], link[href], script[src], img[src], iframe[src]")
            .Select(e => e.GetAttribute("href") ?? e.GetAttribute("action") ?? e.GetAttribute("src") ?? "")
            .ToList();
        Assert.DoesNotContain(addresses, a => a.StartsWith('~')); // an application-relative address the page did not resolve
        addresses = [.. addresses.Where(a => a.StartsWith('/') && !a.StartsWith("//", StringComparison.Ordinal))];
        Assert.NotEmpty(addresses);
        var outside = addresses.Where(a => !a.StartsWith(PathBase + "/", StringComparison.Ordinal)).ToList();
        Assert.True(outside.Count == 0, $"At {page.Uri}: {string.Join(", ", outside)}");
    }
}
