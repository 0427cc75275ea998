using System.Net;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>Bursts get 429 with Retry-After: per account name on the login page, per client at the token endpoint, per account at the device verification page.</summary>
public abstract class RateLimitingTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private static readonly string Verification = new Uri(TestServerFactory.Authority, "/connect/verify").AbsoluteUri;

    [SkippableFact]
    public async Task A_burst_of_sign_ins_for_one_account_gets_429_with_a_page_while_other_accounts_go_on()
    {
        var user = await server.CreateUserAsync();
        var other = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var statuses = new List<HttpStatusCode>();
        BrowserPage last = null!;
        for (var i = 0; i < 4; i++)
        {
            last = await AccountPages.SignInAsync(browser, user.UserName, $"wrong-password-{i}");
            statuses.Add(last.Status);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        Assert.True(int.Parse(last.Response.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.Contains("Too many attempts", last.Body);
        Assert.Equal("/", (await AccountPages.SignInAsync(server.CreateBrowser(), other.UserName, other.Password)).Uri.AbsolutePath);
    }

    /// <summary>The user name and the email of one account share its limit: switching between them buys no attempts.</summary>
    [SkippableFact]
    public async Task Sign_ins_by_user_name_and_by_email_count_towards_one_limit_for_the_account()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var statuses = new List<HttpStatusCode>();
        foreach (var name in new[] { user.UserName, user.Email, user.UserName, user.Email })
        {
            statuses.Add((await AccountPages.SignInAsync(browser, name, "wrong-password-x")).Status);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    /// <summary>
    /// Resending the confirmation link names the account by its email, and shares its limit: each post sends an email.
    /// </summary>
    [SkippableFact]
    public async Task Resend_confirmation_posts_count_towards_the_account_s_limit()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var statuses = new List<HttpStatusCode>
        {
            (await AccountPages.SignInAsync(browser, user.UserName, "wrong-password-x")).Status,
        };
        for (var i = 0; i < 3; i++)
        {
            // The field as the page names it, as a browser fills it in.
            var form = await AccountPages.OpenAsync(browser, "/account/resend-confirmation");
            var field = form.Document.QuerySelector("input[type=email]")!.GetAttribute("name")!;
            statuses.Add((await browser.SubmitAsync(form, new Dictionary<string, string> { [field] = user.Email })).Status);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    /// <summary>
    /// A name longer than any account's is no account's: all such names share one limit, so the limiter holds one key
    /// for them rather than one per name sent (each kept for its window, whatever its size).
    /// </summary>
    [SkippableFact]
    public async Task Sign_ins_with_names_longer_than_any_account_s_share_one_limit()
    {
        var browser = server.CreateBrowser();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            var name = Unique.Name("long") + new string('x', IdentityServer.Accounts.ApplicationUser.NameColumnLength);
            statuses.Add((await AccountPages.SignInAsync(browser, name, "some-password-x")).Status);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        // A name of an ordinary length has its own limit still.
        Assert.Equal(HttpStatusCode.OK, (await AccountPages.SignInAsync(browser, Unique.Name("short"), "some-password-x")).Status);
    }

    /// <summary>As for names: client ids longer than a client's can be share one limit.</summary>
    [SkippableFact]
    public async Task Token_requests_with_client_ids_longer_than_any_client_s_share_one_limit()
    {
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            var clientId = Unique.Name("long") + new string('x', 100);
            statuses.Add((await OAuth.PostTokenAsync(server, new Dictionary<string, string>
            {
                ["grant_type"] = "client_credentials", ["client_id"] = clientId, ["client_secret"] = "not-a-secret",
            })).StatusCode);
        }

        Assert.DoesNotContain(HttpStatusCode.TooManyRequests, statuses[..3]);
        Assert.Equal(HttpStatusCode.TooManyRequests, statuses[3]);
    }

    /// <summary>
    /// Form posts are held to 256 KiB a value and 1 MiB in all (FormBodyValidation), pages and protocol endpoints alike:
    /// ASP.NET Core's defaults took a user name of millions of characters.
    /// </summary>
    [SkippableFact]
    public async Task A_form_with_a_value_or_a_body_over_the_limits_is_refused()
    {
        var hugeName = new string('x', 300 * 1024);

        var login = await AccountPages.SignInAsync(server.CreateBrowser(), hugeName, "some-password-x");
        var browser = server.CreateBrowser();
        var manyValues = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/login"), new Dictionary<string, string>(
            Enumerable.Range(0, 5).Select(i => KeyValuePair.Create($"Extra{i}", new string('x', 250 * 1024))))
        {
            ["Input.UserName"] = Unique.Name("big"), ["Input.Password"] = "some-password-x",
        });
        var token = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["client_id"] = "some-client",
            ["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", ["client_assertion"] = hugeName,
        });

        var bigTokenRequest = await OAuth.PostTokenAsync(server, new Dictionary<string, string>(
            Enumerable.Range(0, 5).Select(i => KeyValuePair.Create($"extra{i}", new string('x', 250 * 1024))))
        {
            ["grant_type"] = "client_credentials", ["client_id"] = "some-client",
        });

        Assert.Equal(HttpStatusCode.BadRequest, login.Status);
        Assert.Contains("The server could not understand this request.", login.Body);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, manyValues.Status);
        Assert.Contains("The server could not understand this request.", manyValues.Body);
        Assert.Equal(HttpStatusCode.BadRequest, token.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(token)).GetProperty("error").GetString());
        // Over the whole body's limit, at a protocol endpoint: its own error format, with the status that says why.
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, bigTokenRequest.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(bigTokenRequest)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task A_burst_of_token_requests_from_one_client_gets_429_with_OAuth_error_JSON()
    {
        var scope = await server.CreateScopeAsync();
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage last = null!;
        for (var i = 0; i < 4; i++)
        {
            last = await OAuth.PostTokenAsync(server, new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = scope }, client);
            statuses.Add(last.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        Assert.NotNull(last.Headers.RetryAfter);
        Assert.Equal("temporarily_unavailable", (await OAuth.ReadJsonAsync(last)).GetProperty("error").GetString());
        var another = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        Assert.True((await OAuth.PostTokenAsync(server, new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = scope }, another)).IsSuccessStatusCode);
    }

    /// <summary>
    /// Device user codes checked by one signed-in account (RFC 8628 5.1), whatever their form: after its limit the
    /// verification page answers 429 with a page, while another account goes on.
    /// </summary>
    [SkippableFact]
    public async Task A_burst_of_user_code_checks_by_one_account_gets_429_while_other_accounts_go_on()
    {
        var browser = await SignedInAtVerificationAsync(await server.CreateUserAsync());
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            statuses.Add((await browser.NavigateAsync($"{Verification}?user_code=0000-0000-{i:0000}")).Status);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var other = await SignedInAtVerificationAsync(await server.CreateUserAsync());
        var page = await other.NavigateAsync(Verification + "?user_code=0000-0000-9999");
        Assert.Equal(HttpStatusCode.OK, page.Status);
        Assert.Contains("That code is not valid or has expired", page.Body);
    }

    private async Task<Browser> SignedInAtVerificationAsync(TestUser user)
    {
        var browser = server.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(Verification), user, stopAt: _ => false);
        Assert.Equal("/connect/verify", page.Uri.AbsolutePath);
        return browser;
    }
}

public static class LowRateLimits
{
    public static void Apply(ServerFixture fixture)
    {
        AccountSettings.Apply(fixture);
        fixture.Settings["RateLimiting:PerAccount:PermitLimit"] = "3";
        fixture.Settings["RateLimiting:PerAccount:Window"] = "00:10:00";
        fixture.Settings["RateLimiting:PerClient:PermitLimit"] = "3";
        fixture.Settings["RateLimiting:PerClient:Window"] = "00:10:00";
        fixture.Settings["RateLimiting:UserCodesPerAccount:PermitLimit"] = "3";
        fixture.Settings["RateLimiting:UserCodesPerAccount:Window"] = "00:10:00";
    }
}

public sealed class LowRateLimitsSqliteFixture : SqliteServerFixture
{
    public LowRateLimitsSqliteFixture() => LowRateLimits.Apply(this);
}

public sealed class LowRateLimitsPostgreSqlFixture : PostgreSqlServerFixture
{
    public LowRateLimitsPostgreSqlFixture() => LowRateLimits.Apply(this);
}

public sealed class SqliteRateLimitingTests(LowRateLimitsSqliteFixture server) : RateLimitingTests<LowRateLimitsSqliteFixture>(server), IClassFixture<LowRateLimitsSqliteFixture>;

public sealed class PostgreSqlRateLimitingTests(LowRateLimitsPostgreSqlFixture server) : RateLimitingTests<LowRateLimitsPostgreSqlFixture>(server), IClassFixture<LowRateLimitsPostgreSqlFixture>;

/// <summary>Many accounts from one address: the per-IP limit.</summary>
public abstract class IpRateLimitingTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private static readonly string Verification = new Uri(TestServerFactory.Authority, "/connect/verify").AbsoluteUri;

    [SkippableFact]
    public async Task A_burst_of_sign_ins_for_many_accounts_from_one_address_gets_429()
    {
        var browser = server.CreateBrowser();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            statuses.Add((await AccountPages.SignInAsync(browser, Unique.Name("many"), "some-password-x")).Status);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    /// <summary>
    /// Device user codes checked from one address, signed in or not (the code is checked before the page asks for a
    /// sign-in): a code in the link and an Allow posted count; the empty form does not, and stays open.
    /// </summary>
    [SkippableFact]
    public async Task A_burst_of_user_code_checks_from_one_address_gets_429()
    {
        var browser = server.CreateBrowser();
        var statuses = new List<HttpStatusCode>
        {
            (await browser.NavigateAsync(Verification + "?user_code=0000-0000-0001")).Status,
            (await browser.PostFormAsync(Verification + "?handler=Approve", new Dictionary<string, string> { ["user_code"] = "0000-0000-0002" })).Status,
            (await browser.NavigateAsync(Verification + "?user_code=0000-0000-0003")).Status,
            (await browser.NavigateAsync(Verification + "?user_code=0000-0000-0004")).Status,
        };

        Assert.NotEqual(HttpStatusCode.TooManyRequests, statuses[1]);
        Assert.Equal([HttpStatusCode.OK, statuses[1], HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var form = await browser.NavigateAsync(Verification);
        Assert.NotEqual(HttpStatusCode.TooManyRequests, form.Status);
    }
}

public static class LowIpRateLimits
{
    public static void Apply(ServerFixture fixture)
    {
        fixture.Settings["RateLimiting:PerIp:PermitLimit"] = "3";
        fixture.Settings["RateLimiting:PerIp:Window"] = "00:10:00";
        fixture.Settings["RateLimiting:UserCodesPerIp:PermitLimit"] = "3";
        fixture.Settings["RateLimiting:UserCodesPerIp:Window"] = "00:10:00";
    }
}

public sealed class LowIpRateLimitSqliteFixture : SqliteServerFixture
{
    public LowIpRateLimitSqliteFixture() => LowIpRateLimits.Apply(this);
}

public sealed class LowIpRateLimitPostgreSqlFixture : PostgreSqlServerFixture
{
    public LowIpRateLimitPostgreSqlFixture() => LowIpRateLimits.Apply(this);
}

public sealed class SqliteIpRateLimitingTests(LowIpRateLimitSqliteFixture server) : IpRateLimitingTests<LowIpRateLimitSqliteFixture>(server), IClassFixture<LowIpRateLimitSqliteFixture>;

public sealed class PostgreSqlIpRateLimitingTests(LowIpRateLimitPostgreSqlFixture server) : IpRateLimitingTests<LowIpRateLimitPostgreSqlFixture>(server), IClassFixture<LowIpRateLimitPostgreSqlFixture>;
