using Microsoft.Extensions.DependencyInjection;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// <c>prompt=create</c> (Initiating User Registration via OpenID Connect 1.0): an app's sign-up button sends the user to
/// the registration page, and the new account comes back to the app signed in, in one flow. Offered only while
/// registration is on (these servers: on, without email confirmation, so a new account is signed in at once).
/// </summary>
public abstract class PromptCreateTests<TFixture>(TFixture fixture) where TFixture : ServerFixture
{
    private const string Scope = "openid profile";

    private static readonly Dictionary<string, string?> RegistrationOn = new()
    {
        ["Accounts:AllowRegistration"] = "true",
        ["Accounts:RequireConfirmedEmail"] = "false",
    };

    private static Dictionary<string, string?> Create => new() { ["prompt"] = "create" };

    /// <summary>Fills and submits the registration page the browser is on; returns where the browser stopped (the app, or a page).</summary>
    private static Task<BrowserPage> RegisterAsync(Browser browser, BrowserPage page, string userName)
    {
        Assert.True(page.Uri.AbsolutePath == "/account/register", $"Expected the registration page, got {(int)page.Status} at {page.Uri}");
        return browser.SubmitAsync(page, new Dictionary<string, string>
        {
            ["Input.UserName"] = userName, ["Input.Email"] = $"{userName}@example.test",
            ["Input.Password"] = "a-long-enough-passphrase-1", ["Input.ConfirmPassword"] = "a-long-enough-passphrase-1",
        }, stopAt: OAuth.IsApp);
    }

    /// <summary>The code the browser brought back to the app (asserting it got there).</summary>
    private static string CodeAtApp(BrowserPage page)
    {
        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"Expected a redirect to the app, got {(int)page.Status} at {page.Uri}");
        return QueryHelpers.ParseQuery(page.RedirectTarget!.Query)["code"].ToString();
    }

    /// <summary>Follows a page's link to the login page (the registration page's "Sign in", the confirmation page's "sign in").</summary>
    private static Task<BrowserPage> FollowSignInLinkAsync(Browser browser, BrowserPage page) =>
        browser.NavigateAsync(new Uri(TestServerFactory.Authority, page.Document.QuerySelector("a[href^='/account/login']")!.GetAttribute("href")!).AbsoluteUri);

    /// <summary>An app that knows the person's email address (login_hint) has it filled in on the registration page; any other hint is not.</summary>
    [SkippableFact]
    public async Task A_login_hint_that_is_an_email_address_fills_in_the_registration_pages_email()
    {
        await using var factory = fixture.StartServer(RegistrationOn);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync(Scope);

        async Task<string?> EmailFieldAsync(string hint)
        {
            var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create(),
                extra: new Dictionary<string, string?> { ["prompt"] = "create", ["login_hint"] = hint }), OAuth.IsApp);
            Assert.True(page.Uri.AbsolutePath == "/account/register", $"Expected the registration page, got {(int)page.Status} at {page.Uri}");
            return page.Document.QuerySelector("#Input_Email")!.GetAttribute("value");
        }

        Assert.Equal("newcomer@example.test", await EmailFieldAsync("newcomer@example.test"));
        Assert.Equal("", await EmailFieldAsync("just-a-name") ?? "");
    }

    [SkippableFact]
    public async Task A_sign_up_registers_the_account_and_returns_it_to_the_app_signed_in()
    {
        await using var factory = fixture.StartServer(RegistrationOn);
        var server = new AttachedServer(factory, fixture.Provider);
        Assert.Contains("create", Jwt.Strings((await HttpProtocol.DiscoverAsync(server.CreateClient())).GetProperty("prompt_values_supported")));
        var client = await server.CreatePublicClientAsync(Scope);
        var pkce = Pkce.Create();
        var browser = server.CreateBrowser();
        var userName = Unique.Name("newcomer");

        var registration = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, pkce, extra: Create), OAuth.IsApp);
        var back = await RegisterAsync(browser, registration, userName);

        var tokens = await OAuth.RedeemAsync(server, client, CodeAtApp(back), pkce);
        Assert.Equal(userName, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("preferred_username").GetString());
    }

    /// <summary>
    /// With confirmed emails required, the new account cannot be signed in at once: the emailed link carries the app's
    /// request, and once the email is confirmed, signing in goes on to the app.
    /// </summary>
    [SkippableFact]
    public async Task With_email_confirmation_the_confirmed_account_signs_in_and_returns_to_the_app()
    {
        var mail = Path.Combine(Path.GetTempPath(), "idsrv-mail", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(mail);
        await using var factory = fixture.StartServer(new Dictionary<string, string?>(RegistrationOn)
        {
            ["Accounts:RequireConfirmedEmail"] = "true", ["Email:PickupDirectory"] = mail,
        });
        var server = new AttachedServer(factory, fixture.Provider);
        server.Settings["Email:PickupDirectory"] = mail;
        var client = await server.CreatePublicClientAsync(Scope);
        var pkce = Pkce.Create();
        var browser = server.CreateBrowser();
        var userName = Unique.Name("confirming");

        var registration = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, pkce, extra: Create), OAuth.IsApp);
        var checkEmail = await RegisterAsync(browser, registration, userName);
        Assert.Equal("/account/register/check-email", checkEmail.Uri.AbsolutePath);
        var message = await Accounts.Mailbox.WaitForAsync(server, $"{userName}@example.test", "Confirm your email address");
        var confirmed = await Accounts.AccountPages.OpenAndConfirmAsync(browser, Accounts.Mailbox.Link(message, "/account/confirm-email"));
        var back = await browser.SubmitAsync(await FollowSignInLinkAsync(browser, confirmed), new Dictionary<string, string>
        {
            ["Input.UserName"] = userName, ["Input.Password"] = "a-long-enough-passphrase-1",
        }, stopAt: OAuth.IsApp);

        var tokens = await OAuth.RedeemAsync(server, client, CodeAtApp(back), pkce);
        Assert.Equal(userName, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("preferred_username").GetString());
    }

    /// <summary>Someone with an account already follows the registration page's "Sign in" link, and the flow goes on.</summary>
    [SkippableFact]
    public async Task From_the_sign_up_page_an_existing_user_signs_in_instead_and_returns_to_the_app()
    {
        await using var factory = fixture.StartServer(RegistrationOn);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync(Scope);
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();

        var registration = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create(), extra: Create), OAuth.IsApp);
        Assert.Equal("/account/register", registration.Uri.AbsolutePath);
        var back = await OAuth.SignInAsync(browser, await FollowSignInLinkAsync(browser, registration), user);

        Assert.False(string.IsNullOrEmpty(CodeAtApp(back)));
    }

    /// <summary>
    /// acr_values still count on the way through the sign-up page: an existing user who signs in instead, on a device
    /// that remembers their second factor (so a plain sign-in would not ask for it), is asked for it.
    /// </summary>
    [SkippableFact]
    public async Task From_the_sign_up_page_an_existing_user_signs_in_as_strongly_as_acr_values_ask()
    {
        await using var factory = fixture.StartServer(RegistrationOn);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync(Scope);
        var user = await server.CreateUserAsync();
        var setup = server.CreateBrowser();
        await Accounts.AccountPages.SignInAsync(setup, user.UserName, user.Password);
        var (key, _) = await Accounts.AccountPages.EnableAuthenticatorAsync(setup);
        var browser = server.CreateBrowser();
        var codePage = await Accounts.AccountPages.SignInAsync(browser, user.UserName, user.Password);
        await browser.SubmitAsync(codePage, new Dictionary<string, string> { ["Input.Code"] = Accounts.Totp.NextCode(key), ["Input.RememberDevice"] = "true" });
        var pkce = Pkce.Create();

        var registration = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "create", ["acr_values"] = "mfa" }), OAuth.IsApp);
        var askedForCode = await OAuth.SignInAsync(browser, await FollowSignInLinkAsync(browser, registration), user);
        Assert.True(askedForCode.Document.QuerySelector("input[name='Input.Code']") is not null, $"Expected the second factor, got {(int)askedForCode.Status} at {askedForCode.Uri}");
        // Each step's code is taken once: the step after the one the device was remembered with.
        var laterCode = Accounts.Totp.Code(key, DateTimeOffset.UtcNow.AddSeconds(60));
        var back = await browser.SubmitAsync(askedForCode, new Dictionary<string, string> { ["Input.Code"] = laterCode }, stopAt: OAuth.IsApp);

        var tokens = await OAuth.RedeemAsync(server, client, CodeAtApp(back), pkce);
        Assert.Equal("mfa", Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("acr").GetString());
    }

    /// <summary>none never shows a page (OpenID Connect Core 3.1.2.1), the registration page included.</summary>
    [SkippableFact]
    public async Task Prompt_none_with_create_is_refused_to_the_app_and_at_the_par_endpoint()
    {
        await using var factory = fixture.StartServer(RegistrationOn);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync(Scope);
        var pkce = Pkce.Create();

        var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "none create" }), OAuth.IsApp);
        var pushed = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint", new Dictionary<string, string>
        {
            ["client_id"] = client.ClientId, ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = Scope,
            ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256", ["prompt"] = "create none",
        });

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"Expected a redirect to the app, got {(int)page.Status} at {page.Uri}");
        Assert.Equal("invalid_request", QueryHelpers.ParseQuery(page.RedirectTarget!.Query)["error"].ToString());
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, pushed.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(pushed)).GetProperty("error").GetString());
    }

    /// <summary>The app asked for a new account: a session of another user does not skip the registration page.</summary>
    [SkippableFact]
    public async Task A_signed_in_user_is_still_shown_the_registration_page()
    {
        await using var factory = fixture.StartServer(RegistrationOn);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync(Scope);
        var browser = server.CreateBrowser();
        await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create()), await server.CreateUserAsync());

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create(), extra: Create), OAuth.IsApp);

        Assert.Equal("/account/register", page.Uri.AbsolutePath);
    }

    /// <summary>
    /// Going on from the registration page to the request (its return URL, marked as sent there) without signing up or
    /// in is no way past it: the session's sign-in is older than the mark. The server's clock moves on between the two,
    /// as the mark counts in whole seconds.
    /// </summary>
    [SkippableFact]
    public async Task Going_on_to_the_request_without_signing_in_since_shows_the_registration_page_again()
    {
        var clock = new Keys.TestClock(DateTimeOffset.UtcNow);
        await using var factory = fixture.StartServer(RegistrationOn, testServices: services => services.AddSingleton<TimeProvider>(clock));
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync(Scope);
        var browser = server.CreateBrowser();
        await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create()), await server.CreateUserAsync());
        clock.Advance(TimeSpan.FromSeconds(5));
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create(), extra: Create), OAuth.IsApp);
        Assert.Equal("/account/register", page.Uri.AbsolutePath);

        var returnUrl = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(page.Uri.Query)["returnUrl"].ToString();
        var again = await browser.NavigateAsync(new Uri(page.Uri, returnUrl).AbsoluteUri, OAuth.IsApp);

        Assert.Equal("/account/register", again.Uri.AbsolutePath);
    }

    /// <summary>With registration off (the default) there is nowhere to send the user: not offered, and refused to the app.</summary>
    [SkippableFact]
    public async Task With_registration_off_prompt_create_is_not_offered_and_the_app_gets_invalid_request()
    {
        var client = await fixture.CreatePublicClientAsync(Scope);

        var page = await fixture.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(fixture, client.ClientId, Scope, Pkce.Create(), extra: Create), OAuth.IsApp);

        Assert.DoesNotContain("create", Jwt.Strings((await HttpProtocol.DiscoverAsync(fixture.CreateClient())).GetProperty("prompt_values_supported")));
        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"Expected a redirect to the app, got {(int)page.Status} at {page.Uri}");
        Assert.Equal("invalid_request", QueryHelpers.ParseQuery(page.RedirectTarget!.Query)["error"].ToString());
    }
}

public sealed class SqlitePromptCreateTests(SqliteServerFixture server)
    : PromptCreateTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlPromptCreateTests(PostgreSqlServerFixture server)
    : PromptCreateTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
