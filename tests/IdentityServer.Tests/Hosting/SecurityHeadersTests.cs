using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>Security headers on every page, the form_post page's CSP, and the __Host- cookies outside Development.</summary>
public abstract class SecurityHeadersTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    /// <summary>
    /// Outside Development (the tests run as Testing) the pages' cookies are Secure: a page reached over plain HTTP
    /// sends a browser to HTTPS, and refuses anything else, instead of failing in antiforgery with a 500. The protocol
    /// APIs answer with their own OAuth error; health checks stay reachable for load balancers.
    /// </summary>
    [SkippableFact]
    public async Task Over_plain_HTTP_pages_send_browsers_to_HTTPS_and_nothing_fails()
    {
        using var http = new HttpClient(server.Factory.CreateReportingHandler()) { BaseAddress = new Uri("http://localhost/") };

        var login = await http.GetAsync("/account/login?ReturnUrl=%2Faccount");
        var posted = await http.PostAsync("/account/login", new FormUrlEncodedContent(new Dictionary<string, string> { ["Input.UserName"] = "x" }));
        var endSession = await http.GetAsync("/connect/endsession");
        var admin = await http.PostAsync("/api/admin/clients", new StringContent("{}", Encoding.UTF8, "application/json"));
        var adminRead = await http.GetAsync("/api/admin/clients");
        var token = await http.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials" }));
        var health = await http.GetAsync("/health");
        // A proxy that said HTTPS but is not believed (not configured as trusted): told so, not sent round in a loop.
        using var proxied = new HttpRequestMessage(HttpMethod.Get, "/account/login");
        proxied.Headers.Add("X-Forwarded-Proto", "https");
        var untrustedProxy = await http.SendAsync(proxied);

        Assert.Equal(HttpStatusCode.MovedPermanently, login.StatusCode);
        Assert.Equal("https://localhost/account/login?ReturnUrl=%2Faccount", login.Headers.Location?.ToString());
        Assert.Equal(HttpStatusCode.MovedPermanently, endSession.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, posted.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, admin.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(admin)).GetProperty("error").GetString());
        // Never redirected: a client following it would drop its Authorization header.
        Assert.Equal(HttpStatusCode.BadRequest, adminRead.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, token.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(token)).GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, untrustedProxy.StatusCode);
        Assert.Contains("X-Forwarded-Proto", await untrustedProxy.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task Every_page_has_a_CSP_without_inline_scripts_and_the_other_security_headers()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var browser = server.CreateBrowser();
        var pages = new List<BrowserPage>();
        foreach (var path in new[] { "/", "/account/login", "/account/register", "/account/forgot-password", "/account/resend-confirmation", "/error", "/no-such-page" })
        {
            pages.Add(await AccountPages.OpenAsync(browser, path));
        }

        pages.Add(await AccountPages.SignInAsync(browser, user.UserName, user.Password));
        foreach (var path in new[] { "/account", "/account/password", "/account/email", "/account/two-factor", "/account/two-factor/authenticator", "/account/passkeys", "/account/apps", "/account/sessions" })
        {
            pages.Add(await AccountPages.OpenAsync(browser, path));
        }

        pages.Add(await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp));
        Assert.NotNull(pages[^1].Document.QuerySelector("button[value=accept]"));

        foreach (var page in pages)
        {
            var csp = Header(page.Response, "Content-Security-Policy");
            Assert.True(csp is not null, $"No CSP on {page.Uri}");
            var scripts = Directive(csp!, "script-src");
            Assert.True(scripts is not null && !scripts.Contains("'unsafe-inline'") && scripts.StartsWith("'self'"), $"{page.Uri}: {csp}");
            Assert.Contains("frame-ancestors 'none'", csp);
            Assert.Contains("object-src 'none'", csp);
            Assert.Equal("nosniff", Header(page.Response, "X-Content-Type-Options"));
            Assert.Equal("no-referrer", Header(page.Response, "Referrer-Policy"));
            Assert.Equal("DENY", Header(page.Response, "X-Frame-Options"));
            Assert.Empty(page.Document.QuerySelectorAll("script:not([src])"));
            Assert.Empty(page.Document.QuerySelectorAll("[style]"));
        }
    }

    [SkippableFact]
    public async Task The_form_post_page_allows_its_own_script_by_hash_and_posts_only_to_the_clients_redirect_uri()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync(redirectUri: "https://formpost.app.test/callback");
        var browser = server.CreateBrowser();
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(), redirectUri: "https://formpost.app.test/callback",
            extra: new Dictionary<string, string?> { ["response_mode"] = "form_post" });

        var login = await browser.NavigateAsync(url);
        var page = await OAuth.SignInAsync(browser, login, user, stopAt: _ => false);

        Assert.Equal(HttpStatusCode.OK, page.Status);
        Assert.Equal("https://formpost.app.test/callback", page.Document.QuerySelector("form")?.GetAttribute("action"));
        var csp = Header(page.Response, "Content-Security-Policy")!;
        Assert.Equal("https://formpost.app.test", Directive(csp, "form-action"));
        foreach (var script in page.Document.QuerySelectorAll("script"))
        {
            var hash = $"'sha256-{Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(script.TextContent)))}'";
            Assert.Contains(hash, Directive(csp, "script-src")!.Split(' '));
        }
    }

    [SkippableFact]
    public async Task An_error_sent_back_with_form_post_uses_the_same_allowed_script()
    {
        var client = await server.CreatePublicClientAsync(redirectUri: "https://formpost-error.app.test/callback");
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid not-a-scope", Pkce.Create(), redirectUri: "https://formpost-error.app.test/callback",
            extra: new Dictionary<string, string?> { ["response_mode"] = "form_post" });

        var page = await server.CreateBrowser().NavigateAsync(url);

        Assert.Equal("invalid_scope", page.Document.QuerySelector("input[name=error]")?.GetAttribute("value"));
        var csp = Header(page.Response, "Content-Security-Policy")!;
        Assert.Equal("https://formpost-error.app.test", Directive(csp, "form-action"));
        var script = page.Document.QuerySelector("script")!.TextContent;
        Assert.Contains($"'sha256-{Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(script)))}'", Directive(csp, "script-src")!.Split(' '));
    }

    [SkippableFact]
    public async Task Outside_Development_the_session_antiforgery_and_tempdata_cookies_are_Host_prefixed_and_secure()
    {
        var user = await server.CreateUserAsync();
        using var client = server.CreateClient();
        var login = await client.GetAsync("/account/login");
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var cookies = browser.Cookies.GetAllCookies().ToList();
        Assert.Contains(cookies, c => c.Name == "__Host-idsrv.session" && c.Secure && c.HttpOnly && c.Path == "/");
        Assert.Contains(cookies, c => c.Name == "__Host-idsrv.af" && c.Secure && c.HttpOnly && c.Path == "/");
        Assert.DoesNotContain(cookies, c => !c.Name.StartsWith("__Host-", StringComparison.Ordinal));
        Assert.All(login.Headers.GetValues("Set-Cookie"), header => Assert.Matches(new Regex("; secure", RegexOptions.IgnoreCase), header));

        // TempData (a notice carried over a redirect): ending another browser's session leaves one for the next page.
        await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password);
        var sessions = await browser.NavigateAsync(IdentityServer.Tests.Admin.AdminPages.Url("/account/sessions"));
        var ended = await browser.SubmitAsync(sessions, selector: "form[action*='handler=End']", stopAt: _ => true);
        var tempData = Assert.Single(ended.Response.Headers.GetValues("Set-Cookie"), header => header.Contains("tempdata", StringComparison.OrdinalIgnoreCase));
        Assert.StartsWith("__Host-idsrv.tempdata=", tempData);
        Assert.Matches(new Regex("; secure", RegexOptions.IgnoreCase), tempData);
        Assert.Matches(new Regex("; httponly", RegexOptions.IgnoreCase), tempData);
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(", ", values)
        : response.Content.Headers.TryGetValues(name, out var content) ? string.Join(", ", content) : null;

    private static string? Directive(string csp, string name) => csp.Split(';', StringSplitOptions.TrimEntries)
        .Where(d => d.StartsWith(name + " ", StringComparison.Ordinal)).Select(d => d[(name.Length + 1)..]).FirstOrDefault();
}

public sealed class SqliteSecurityHeadersTests(SqliteAccountsFixture server) : SecurityHeadersTests<SqliteAccountsFixture>(server), IClassFixture<SqliteAccountsFixture>;

public sealed class PostgreSqlSecurityHeadersTests(PostgreSqlAccountsFixture server) : SecurityHeadersTests<PostgreSqlAccountsFixture>(server), IClassFixture<PostgreSqlAccountsFixture>;
