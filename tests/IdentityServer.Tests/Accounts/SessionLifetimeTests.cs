using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// A login session ends <c>Accounts:SessionMaxLifetime</c> after the sign-in however active it stays, so a stolen
/// session cookie cannot be kept alive by using it. The server's clock is moved, not waited for.
/// </summary>
public abstract class SessionLifetimeTests<TFixture>(TFixture fixture) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_session_in_use_ends_at_its_maximum_lifetime()
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var settings = new Dictionary<string, string?>(fixture.Settings)
        {
            ["Accounts:SessionIdleTimeout"] = "1.00:00:00",
            ["Accounts:SessionMaxLifetime"] = "01:00:00",
        };
        await using var factory = new TestServerFactory(settings, testServices: services => services.AddSingleton<TimeProvider>(clock));
        var server = new AttachedServer(factory, fixture.Provider);
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        clock.Advance(TimeSpan.FromMinutes(59));
        var inTime = await AccountPages.OpenAsync(browser, "/account");
        clock.Advance(TimeSpan.FromMinutes(2));
        var tooLate = await AccountPages.OpenAsync(browser, "/account");

        Assert.Equal("/account", inTime.Uri.AbsolutePath);
        Assert.Equal("/account/login", tooLate.Uri.AbsolutePath);
    }

    /// <summary>
    /// The sessions page lists the sessions still in use: a cookie renewed by use marks its session as seen, and one
    /// left idle past <c>Accounts:SessionIdleTimeout</c> (20 minutes), whose cookie no longer works, drops off the list.
    /// </summary>
    [SkippableFact]
    public async Task The_sessions_page_leaves_out_sessions_left_idle_past_the_idle_timeout()
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(fixture.Settings),
            testServices: services => services.AddSingleton<TimeProvider>(clock));
        var server = new AttachedServer(factory, fixture.Provider);
        var user = await server.CreateUserAsync();
        var idle = server.CreateBrowser();
        await AccountPages.SignInAsync(idle, user.UserName, user.Password);
        var active = server.CreateBrowser();
        await AccountPages.SignInAsync(active, user.UserName, user.Password);

        clock.Advance(TimeSpan.FromMinutes(15));
        Assert.Equal(2, (await AccountPages.OpenAsync(active, "/account/sessions")).Document.QuerySelectorAll("ul.sessions li").Length);
        clock.Advance(TimeSpan.FromMinutes(10));
        var list = await AccountPages.OpenAsync(active, "/account/sessions");

        var entry = Assert.Single(list.Document.QuerySelectorAll("ul.sessions li"));
        Assert.NotNull(entry.QuerySelector(".this-session"));
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(idle, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// Changing how the account signs in needs a recent sign-in: an older session is sent to sign in again, then comes
    /// back to the page.
    /// </summary>
    [SkippableFact]
    public async Task Setting_up_an_authenticator_asks_an_older_session_to_sign_in_again()
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(fixture.Settings),
            testServices: services => services.AddSingleton<TimeProvider>(clock));
        var server = new AttachedServer(factory, fixture.Provider);
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        clock.Advance(TimeSpan.FromMinutes(6)); // Accounts:RecentSignIn is 5 minutes
        var asked = await AccountPages.OpenAsync(browser, "/account/two-factor/authenticator");
        var back = await browser.SubmitAsync(asked, new Dictionary<string, string> { ["Input.UserName"] = user.UserName, ["Input.Password"] = user.Password });

        Assert.Equal("/account/login", asked.Uri.AbsolutePath);
        Assert.Equal("/account/two-factor/authenticator", back.Uri.AbsolutePath);
        Assert.NotNull(back.Document.QuerySelector("#shared-key"));
    }
}

public sealed class SqliteSessionLifetimeTests(SqliteServerFixture fixture) : SessionLifetimeTests<SqliteServerFixture>(fixture), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlSessionLifetimeTests(PostgreSqlServerFixture fixture) : SessionLifetimeTests<PostgreSqlServerFixture>(fixture), IClassFixture<PostgreSqlServerFixture>;
