using System.Globalization;
using System.Net;
using System.Security.Claims;
using System.Security.Cryptography;
using IdentityServer.Accounts;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// Each login session has its row on the server: signing out deletes it, and a cookie whose row is gone is refused,
/// so a copy of the cookie (stolen, or left in another tab of a shared computer) stops working at sign-out too.
/// </summary>
public abstract class ServerSideSessionTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task Signing_out_ends_the_session_for_a_copy_of_its_cookie_too()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var copy = CopyOf(browser);
        Assert.Equal("/account", (await AccountPages.OpenAsync(copy, "/account")).Uri.AbsolutePath);

        var signedOut = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        Assert.Contains("You are signed out", signedOut.Body);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(copy, "/account")).Uri.AbsolutePath);
        Assert.Empty(await SessionRowsAsync(user.Id));
    }

    [SkippableFact]
    public async Task Signing_out_at_the_end_session_endpoint_ends_the_session_for_a_copy_of_its_cookie_too()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var copy = CopyOf(browser);

        var endSession = await server.EndpointAsync("end_session_endpoint") + "?id_token_hint=" + tokens.GetProperty("id_token").GetString();
        await browser.NavigateAsync(endSession);

        var page = await copy.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp);
        Assert.True(page.RedirectTarget is null && page.Uri.AbsolutePath == "/account/login",
            $"Expected the login page, got {(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
    }

    [SkippableFact]
    public async Task The_sessions_page_lists_each_browser_and_signs_one_out_without_the_others()
    {
        var user = await server.CreateUserAsync();
        var phone = server.CreateBrowser();
        await AccountPages.SignInAsync(phone, user.UserName, user.Password);
        var laptop = server.CreateBrowser();
        await AccountPages.SignInAsync(laptop, user.UserName, user.Password);

        var list = await AccountPages.OpenAsync(laptop, "/account/sessions");
        var entries = list.Document.QuerySelectorAll("ul.sessions li");
        Assert.Equal(2, entries.Length);
        Assert.Single(entries, e => e.QuerySelector(".this-session") is not null);
        var ended = await laptop.SubmitAsync(list, selector: "ul.sessions form");

        Assert.Contains("That browser has been signed out", ended.Body);
        Assert.Single(ended.Document.QuerySelectorAll("ul.sessions li"));
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(phone, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account", (await AccountPages.OpenAsync(laptop, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// The browser's name is its User-Agent, kept to 256 characters without splitting a character (PostgreSQL refuses
    /// half of a surrogate pair); a browser that sends none is listed as unknown.
    /// </summary>
    [SkippableFact]
    public async Task The_sessions_page_names_each_browser_by_its_user_agent_whatever_it_sends()
    {
        var user = await server.CreateUserAsync();
        var emoji = server.CreateBrowser();
        emoji.UserAgent = new string('a', 255) + "\U0001F600tail";
        await AccountPages.SignInAsync(emoji, user.UserName, user.Password);
        var silent = server.CreateBrowser();
        await AccountPages.SignInAsync(silent, user.UserName, user.Password);

        var names = (await AccountPages.OpenAsync(silent, "/account/sessions")).Document.QuerySelectorAll(".session-browser").Select(e => e.TextContent).ToList();

        Assert.Equal(["Unknown browser", new string('a', 255)], names);
    }

    /// <summary>
    /// Opening the authenticator page makes a key to scan but changes nothing that signs in, so it ends no session (a
    /// link from another site can open it); turning the authenticator on does end the other sessions.
    /// </summary>
    [SkippableFact]
    public async Task Opening_the_authenticator_page_ends_no_session_and_turning_it_on_ends_the_others()
    {
        var user = await server.CreateUserAsync();
        var other = server.CreateBrowser();
        await AccountPages.SignInAsync(other, user.UserName, user.Password);
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var setup = await AccountPages.OpenAsync(browser, "/account/two-factor/authenticator");
        Assert.NotNull(setup.Document.QuerySelector("#shared-key"));
        Assert.Equal("/account", (await AccountPages.OpenAsync(other, "/account")).Uri.AbsolutePath);
        Assert.Equal(2, (await SessionRowsAsync(user.Id)).Count);

        await AccountPages.EnableAuthenticatorAsync(browser);

        Assert.Equal("/account/login", (await AccountPages.OpenAsync(other, "/account")).Uri.AbsolutePath);
        Assert.Single(await SessionRowsAsync(user.Id));
    }

    /// <summary>A passkey is removed because its device is lost: the sessions it may have started end, this browser's does not.</summary>
    [SkippableFact]
    public async Task Removing_a_passkey_ends_the_other_sessions_of_the_account()
    {
        var user = await server.CreateUserAsync();
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            var passkey = new UserPasskeyInfo(RandomNumberGenerator.GetBytes(16), RandomNumberGenerator.GetBytes(77), DateTimeOffset.UtcNow, 0, [],
                isUserVerified: true, isBackupEligible: false, isBackedUp: false, attestationObject: [], clientDataJson: []) { Name = "Lost phone" };
            Assert.True((await users.AddOrUpdatePasskeyAsync((await users.FindByIdAsync(user.Id))!, passkey)).Succeeded);
        }

        var lost = server.CreateBrowser();
        await AccountPages.SignInAsync(lost, user.UserName, user.Password);
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var removed = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/passkeys"), selector: "form[action*='handler=Remove']");

        Assert.Contains("The passkey has been removed", removed.Body);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(lost, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        Assert.Single(await SessionRowsAsync(user.Id));
    }

    /// <summary>Opened twice at once before a key exists, the authenticator page shows both the same key (one of the two saves loses).</summary>
    [SkippableFact]
    public async Task The_authenticator_page_opened_twice_at_once_shows_one_key()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var pages = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => AccountPages.OpenAsync(browser, "/account/two-factor/authenticator")));

        Assert.All(pages, page => Assert.Equal(HttpStatusCode.OK, page.Status));
        Assert.Single(pages.Select(page => page.Document.QuerySelector("#shared-key")?.TextContent).Distinct());
        Assert.NotNull(pages[0].Document.QuerySelector("#shared-key"));
    }

    [SkippableFact]
    public async Task A_user_cannot_end_another_users_session_by_its_id()
    {
        var victim = await server.CreateUserAsync();
        var victimBrowser = server.CreateBrowser();
        await AccountPages.SignInAsync(victimBrowser, victim.UserName, victim.Password);
        var victimSession = Assert.Single(await SessionRowsAsync(victim.Id));
        var other = await server.CreateUserAsync();
        await AccountPages.SignInAsync(server.CreateBrowser(), other.UserName, other.Password); // so the list has a form to post
        var otherBrowser = server.CreateBrowser();
        await AccountPages.SignInAsync(otherBrowser, other.UserName, other.Password);

        var list = await AccountPages.OpenAsync(otherBrowser, "/account/sessions");
        var answer = await otherBrowser.SubmitAsync(list, new Dictionary<string, string> { ["id"] = victimSession.Id }, selector: "ul.sessions form");

        Assert.Contains("That session had already ended", answer.Body);
        Assert.Equal("/account", (await AccountPages.OpenAsync(victimBrowser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// A session cookie the server itself made (so properly encrypted and signed) is refused without a session id, as
    /// cookies from before sessions had rows are, or with the id of a row that does not exist; the same cookie with
    /// its row's id is accepted, so the refusals are the row check's doing.
    /// </summary>
    [SkippableFact]
    public async Task A_session_cookie_is_accepted_only_while_its_row_exists()
    {
        var user = await server.CreateUserAsync();
        await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password);
        var row = Assert.Single(await SessionRowsAsync(user.Id));

        Assert.Equal("/account", await OpenWithCookieAsync(user.Id, row.Id));
        Assert.Equal("/account/login", await OpenWithCookieAsync(user.Id, sessionId: null));
        Assert.Equal("/account/login", await OpenWithCookieAsync(user.Id, "0123456789abcdef0123456789abcdef"));
    }

    [SkippableFact]
    public async Task Sign_out_everywhere_deletes_every_session_row_of_the_account()
    {
        var user = await server.CreateUserAsync();
        await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password);
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        Assert.Equal(2, (await SessionRowsAsync(user.Id)).Count);

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sessions"), selector: "#sign-out-everywhere");

        Assert.Empty(await SessionRowsAsync(user.Id));
    }

    /// <summary>
    /// Signing in again as the same user continues the session (a step-up must not log the user out of the applications
    /// signed in through it); signing in as someone else in that browser ends the earlier session.
    /// </summary>
    [SkippableFact]
    public async Task Signing_in_again_continues_the_session_and_another_account_ends_it()
    {
        var user = await server.CreateUserAsync();
        var other = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var first = Assert.Single(await SessionRowsAsync(user.Id));

        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var again = Assert.Single(await SessionRowsAsync(user.Id));
        await AccountPages.SignInAsync(browser, other.UserName, other.Password);

        Assert.Equal(first.Id, again.Id);
        Assert.True(again.SignedInAt >= first.SignedInAt);
        Assert.Empty(await SessionRowsAsync(user.Id));
        Assert.Single(await SessionRowsAsync(other.Id));
    }

    /// <summary>
    /// A change that gives the account a new security stamp ends its other sessions (their cookies are refused); their
    /// rows go too, so the sessions page does not list them, and the browser that made the change keeps its own.
    /// </summary>
    [SkippableFact]
    public async Task Changing_the_password_deletes_the_rows_of_the_sessions_it_ended_and_keeps_this_one()
    {
        var user = await server.CreateUserAsync();
        await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password);
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var thisSession = (await SessionRowsAsync(user.Id)).MaxBy(s => s.SignedInAt)!;

        const string newPassword = "changed-passphrase-2";
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/password"), new Dictionary<string, string>
        {
            ["Input.CurrentPassword"] = user.Password, ["Input.NewPassword"] = newPassword, ["Input.ConfirmPassword"] = newPassword,
        });

        Assert.Equal(thisSession.Id, Assert.Single(await SessionRowsAsync(user.Id)).Id);
        Assert.Single((await AccountPages.OpenAsync(browser, "/account/sessions")).Document.QuerySelectorAll("ul.sessions li"));
    }

    /// <summary>
    /// Signing out everywhere while an admin changes the account at the same moment: the account still gets a new
    /// stamp (Identity's own update of the stamp failed its concurrency check then, and left the old one).
    /// </summary>
    [SkippableFact]
    public async Task Signing_out_everywhere_while_an_admin_changes_the_account_still_gives_it_a_new_stamp()
    {
        var admin = await AdminAsync(server);
        for (var round = 0; round < 8; round++)
        {
            var user = await server.CreateUserAsync();
            var browser = server.CreateBrowser();
            await AccountPages.SignInAsync(browser, user.UserName, user.Password);
            var page = await AccountPages.OpenAsync(browser, "/account/sessions");
            var before = await StampOfAsync(user.Id);

            var changes = Enumerable.Range(0, 3).Select(i => admin.PutJsonAsync(Path(UsersUrl, user.Id),
                Json(new { email = user.Email, email_verified = i % 2 == 0 })));
            await Task.WhenAll([browser.SubmitAsync(page, selector: "#sign-out-everywhere"), .. changes]);

            Assert.NotEqual(before, await StampOfAsync(user.Id));
            Assert.Empty(await SessionRowsAsync(user.Id));
        }
    }

    private async Task<string?> StampOfAsync(string userId)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        return await users.GetSecurityStampAsync((await users.FindByIdAsync(userId))!);
    }

    private Browser CopyOf(Browser browser)
    {
        var copy = server.CreateBrowser();
        copy.Cookies.Add(browser.Cookies.GetAllCookies());
        return copy;
    }

    private Task<List<UserSession>> SessionRowsAsync(string userId) => SessionRows.OfAsync(server, userId);

    /// <summary>Opens /account with a session cookie made by the server's own cookie format; answers where the browser ended up.</summary>
    private async Task<string> OpenWithCookieAsync(string userId, string? sessionId)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        var principal = await scope.ServiceProvider.GetRequiredService<SignInManager<ApplicationUser>>()
            .CreateUserPrincipalAsync((await users.FindByIdAsync(userId))!);
        var identity = (ClaimsIdentity)principal.Identity!;
        var now = DateTimeOffset.UtcNow;
        identity.AddClaim(new Claim(SessionClaims.AuthenticationTime, now.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)));
        identity.AddClaim(new Claim(SessionClaims.AuthenticationMethod, SessionClaims.Password));
        if (sessionId is not null)
        {
            identity.AddClaim(new Claim(SessionClaims.SessionId, sessionId));
        }

        var cookie = scope.ServiceProvider.GetRequiredService<IOptionsMonitor<CookieAuthenticationOptions>>().Get(IdentityConstants.ApplicationScheme);
        var ticket = new AuthenticationTicket(principal,
            new AuthenticationProperties { IssuedUtc = now, ExpiresUtc = now.AddMinutes(10) }, IdentityConstants.ApplicationScheme);
        var browser = server.CreateBrowser();
        browser.Cookies.Add(new Cookie(cookie.Cookie.Name!, cookie.TicketDataFormat.Protect(ticket), "/", TestServerFactory.Authority.Host));
        return (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath;
    }
}

public sealed class SqliteServerSideSessionTests(SqliteAccountsFixture server)
    : ServerSideSessionTests<SqliteAccountsFixture>(server), IClassFixture<SqliteAccountsFixture>;

public sealed class PostgreSqlServerSideSessionTests(PostgreSqlAccountsFixture server)
    : ServerSideSessionTests<PostgreSqlAccountsFixture>(server), IClassFixture<PostgreSqlAccountsFixture>;
