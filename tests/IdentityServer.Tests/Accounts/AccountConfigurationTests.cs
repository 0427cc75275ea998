using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Accounts;

/// <summary>Links that have expired (a zero link lifetime: every link is already old when it is opened).</summary>
public abstract class ExpiredLinkTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task An_expired_password_reset_link_is_refused_and_the_password_stays()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"), new Dictionary<string, string> { ["Input.Email"] = user.Email });
        var link = Mailbox.Link(await Mailbox.WaitForAsync(server, user.Email, "Reset your password"), "/account/reset-password");

        var page = await browser.NavigateAsync(link);
        Assert.Contains("This link has expired or has already been used.", page.Body);
        var forced = await browser.PostFormAsync(link, new Dictionary<string, string>
        {
            ["Input.Password"] = "never-set-passphrase", ["Input.ConfirmPassword"] = "never-set-passphrase",
            ["__RequestVerificationToken"] = (await AccountPages.OpenAsync(browser, "/account/forgot-password")).Document
                .QuerySelector("input[name=__RequestVerificationToken]")!.GetAttribute("value")!,
        });

        Assert.Contains("This link has expired or has already been used.", forced.Body);
        Assert.Equal("/", (await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password)).Uri.AbsolutePath);
    }
}

public sealed class ExpiredLinksSqliteFixture : SqliteServerFixture
{
    public ExpiredLinksSqliteFixture()
    {
        AccountSettings.Apply(this);
        Settings["Accounts:EmailLinkLifetime"] = "00:00:00";
    }
}

public sealed class ExpiredLinksPostgreSqlFixture : PostgreSqlServerFixture
{
    public ExpiredLinksPostgreSqlFixture()
    {
        AccountSettings.Apply(this);
        Settings["Accounts:EmailLinkLifetime"] = "00:00:00";
    }
}

public sealed class SqliteExpiredLinkTests(ExpiredLinksSqliteFixture server) : ExpiredLinkTests<ExpiredLinksSqliteFixture>(server), IClassFixture<ExpiredLinksSqliteFixture>;

public sealed class PostgreSqlExpiredLinkTests(ExpiredLinksPostgreSqlFixture server) : ExpiredLinkTests<ExpiredLinksPostgreSqlFixture>(server), IClassFixture<ExpiredLinksPostgreSqlFixture>;

/// <summary>The defaults: registration off.</summary>
public abstract class RegistrationOffTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task Registration_is_refused_when_it_is_not_turned_on_and_the_login_page_does_not_offer_it()
    {
        var browser = server.CreateBrowser();
        var login = await AccountPages.OpenAsync(browser, "/account/login");
        var page = await AccountPages.OpenAsync(browser, "/account/register");
        var post = await browser.PostFormAsync(new Uri(TestServerFactory.Authority, "/account/register").AbsoluteUri, new Dictionary<string, string>
        {
            ["Input.UserName"] = Unique.Name("off"), ["Input.Email"] = "off@example.test", ["Input.Password"] = "some-passphrase-1", ["Input.ConfirmPassword"] = "some-passphrase-1",
            ["__RequestVerificationToken"] = login.Document.QuerySelector("input[name=__RequestVerificationToken]")!.GetAttribute("value")!,
        });

        Assert.Null(login.Document.QuerySelector("a[href^='/account/register']"));
        Assert.Equal(HttpStatusCode.NotFound, page.Status);
        Assert.Equal(HttpStatusCode.NotFound, post.Status);
    }
}

public sealed class SqliteRegistrationOffTests(SqliteServerFixture server) : RegistrationOffTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlRegistrationOffTests(PostgreSqlServerFixture server) : RegistrationOffTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
