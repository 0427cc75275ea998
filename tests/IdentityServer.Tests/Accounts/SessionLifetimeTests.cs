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
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock, ("Accounts:SessionIdleTimeout", "1.00:00:00"), ("Accounts:SessionMaxLifetime", "01:00:00"));
        var (server, user) = await WithUserAsync(factory);
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
    /// The sessions page lists the sessions still in use: a browser used every few minutes stays listed (its cookie is
    /// re-issued every <c>Accounts:SessionValidationInterval</c>, which marks it as active) long past the idle timeout
    /// counted from its sign-in, and one left idle past <c>Accounts:SessionIdleTimeout</c> (20 minutes), whose cookie
    /// no longer works, drops off the list.
    /// </summary>
    [SkippableFact]
    public async Task The_sessions_page_keeps_sessions_in_use_and_leaves_out_those_left_idle_past_the_idle_timeout()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var (server, user) = await WithUserAsync(factory);
        var idle = server.CreateBrowser();
        await AccountPages.SignInAsync(idle, user.UserName, user.Password);
        var active = server.CreateBrowser();
        await AccountPages.SignInAsync(active, user.UserName, user.Password);

        var listed = new List<int>();
        for (var minutes = 5; minutes <= 30; minutes += 5)
        {
            clock.Advance(TimeSpan.FromMinutes(5));
            var list = await AccountPages.OpenAsync(active, "/account/sessions");
            Assert.Equal("/account/sessions", list.Uri.AbsolutePath);
            listed.Add(list.Document.QuerySelectorAll("ul.sessions li .this-session").Length);
        }

        var last = await AccountPages.OpenAsync(active, "/account/sessions");
        Assert.Equal([1, 1, 1, 1, 1, 1], listed);
        Assert.Single(last.Document.QuerySelectorAll("ul.sessions li"));
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(idle, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// Changing how the account signs in needs a recent sign-in: an older session is sent to sign in again, then comes
    /// back to the page.
    /// </summary>
    [SkippableFact]
    public async Task Setting_up_an_authenticator_asks_an_older_session_to_sign_in_again()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var (server, user) = await WithUserAsync(factory);
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        clock.Advance(TimeSpan.FromMinutes(6)); // Accounts:RecentSignIn is 5 minutes
        var asked = await AccountPages.OpenAsync(browser, "/account/two-factor/authenticator");
        var back = await browser.SubmitAsync(asked, new Dictionary<string, string> { ["Input.UserName"] = user.UserName, ["Input.Password"] = user.Password });

        Assert.Equal("/account/login", asked.Uri.AbsolutePath);
        Assert.Equal("/account/two-factor/authenticator", back.Uri.AbsolutePath);
        Assert.NotNull(back.Document.QuerySelector("#shared-key"));
    }

    /// <summary>A server of its own on the fixture's database, whose clock the test moves.</summary>
    private TestServerFactory StartWithClock(TestClock clock, params (string Key, string Value)[] settings)
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var all = new Dictionary<string, string?>(fixture.Settings);
        foreach (var (key, value) in settings)
        {
            all[key] = value;
        }

        return new TestServerFactory(all, testServices: services => services.AddSingleton<TimeProvider>(clock));
    }

    private async Task<(AttachedServer Server, TestUser User)> WithUserAsync(TestServerFactory factory)
    {
        var server = new AttachedServer(factory, fixture.Provider);
        return (server, await server.CreateUserAsync());
    }
}

public sealed class SqliteSessionLifetimeTests(SqliteServerFixture fixture) : SessionLifetimeTests<SqliteServerFixture>(fixture), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlSessionLifetimeTests(PostgreSqlServerFixture fixture) : SessionLifetimeTests<PostgreSqlServerFixture>(fixture), IClassFixture<PostgreSqlServerFixture>;
