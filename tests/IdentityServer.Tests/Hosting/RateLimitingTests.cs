using System.Net;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>Bursts get 429 with Retry-After: per account name on the login page, per client at the token endpoint.</summary>
public abstract class RateLimitingTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
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
}

public sealed class LowIpRateLimitSqliteFixture : SqliteServerFixture
{
    public LowIpRateLimitSqliteFixture()
    {
        Settings["RateLimiting:PerIp:PermitLimit"] = "3";
        Settings["RateLimiting:PerIp:Window"] = "00:10:00";
    }
}

public sealed class LowIpRateLimitPostgreSqlFixture : PostgreSqlServerFixture
{
    public LowIpRateLimitPostgreSqlFixture()
    {
        Settings["RateLimiting:PerIp:PermitLimit"] = "3";
        Settings["RateLimiting:PerIp:Window"] = "00:10:00";
    }
}

public sealed class SqliteIpRateLimitingTests(LowIpRateLimitSqliteFixture server) : IpRateLimitingTests<LowIpRateLimitSqliteFixture>(server), IClassFixture<LowIpRateLimitSqliteFixture>;

public sealed class PostgreSqlIpRateLimitingTests(LowIpRateLimitPostgreSqlFixture server) : IpRateLimitingTests<LowIpRateLimitPostgreSqlFixture>(server), IClassFixture<LowIpRateLimitPostgreSqlFixture>;
