using Microsoft.AspNetCore.WebUtilities;
using System.Net;
using IdentityServer.Accounts;
using System.Security.Cryptography;
using System.Text.Json;
using IdentityServer.Tests.Admin;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// Two real servers: another instance of this one on its own database is the OpenID Connect provider people sign in
/// with (<c>provider.test</c>), registered twice in the server under test: <c>provider</c>, which creates accounts for
/// new people, and <c>partner</c>, which lets in only accounts connected to it on My account (and asks consent).
/// </summary>
public sealed class ExternalProviderServers<TDatabase> : IAsyncLifetime where TDatabase : ServerFixture, new()
{
    public const string ProviderHost = "provider.test";

    /// <summary>The other provider.</summary>
    public SqliteServerFixture Provider { get; } = new();

    /// <summary>The server under test.</summary>
    public TDatabase Server { get; } = new();

    public async Task InitializeAsync()
    {
        if (Server.UnavailableReason is not null)
        {
            return;
        }

        Provider.Settings["Tokens:Issuer"] = $"https://{ProviderHost}/";
        // Its people may sign in before confirming their email, so that it can vouch for an address or not.
        Provider.Settings["Accounts:RequireConfirmedEmail"] = "false";
        await Provider.InitializeAsync();
        await RegisterAsync("provider", "Provider", createAccounts: true, consentType: "implicit");
        Server.Settings["ExternalProviders:provider:SignOutAtProvider"] = "true";
        await RegisterAsync("partner", "Partner", createAccounts: false, consentType: "explicit");
        // A provider whose discovery document cannot be read.
        Server.Settings["ExternalProviders:down:Authority"] = $"https://{ProviderHost}/missing/";
        Server.Settings["ExternalProviders:down:ClientId"] = "nobody";
        AccountSettings.Apply(Server);
        // The server reaches the provider's discovery, keys and token endpoint over HTTP, in memory.
        Server.TestServices = services => services.ConfigureAll<OpenIdConnectOptions>(options =>
            options.BackchannelHttpHandler = Provider.Factory.CreateReportingHandler());
        await Server.InitializeAsync();
    }

    private async Task RegisterAsync(string name, string displayName, bool createAccounts, string consentType)
    {
        foreach (var (key, value) in await RegisterAtProviderAsync(name, "", consentType))
        {
            Server.Settings[key] = value;
        }

        Server.Settings[$"ExternalProviders:{name}:DisplayName"] = displayName;
        Server.Settings[$"ExternalProviders:{name}:CreateAccounts"] = createAccounts ? "true" : "false";
    }

    /// <summary>
    /// Registers the server under test (published under <paramref name="pathBase"/>) as a client of the provider for
    /// the entry <paramref name="name"/>; returns the entry's settings.
    /// </summary>
    public async Task<Dictionary<string, string?>> RegisterAtProviderAsync(string name, string pathBase, string consentType = "implicit")
    {
        var client = await Provider.CreateConfidentialClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "client_secret_post";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [new Uri(TestServerFactory.Authority, $"{pathBase}/signin-{name}").AbsoluteUri];
            c.PostLogoutRedirectUris = [new Uri(TestServerFactory.Authority, $"{pathBase}/signin-{name}/signed-out").AbsoluteUri];
            c.Scope = "openid profile email";
            c.ConsentType = consentType;
        });
        return new()
        {
            [$"ExternalProviders:{name}:Authority"] = $"https://{ProviderHost}/",
            [$"ExternalProviders:{name}:ClientId"] = client.ClientId,
            [$"ExternalProviders:{name}:ClientSecret"] = client.ClientSecret,
        };
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        await Provider.DisposeAsync();
    }

    /// <summary>
    /// A browser on the provider (or <paramref name="provider"/>) and the server under test (or <paramref name="server"/>);
    /// a 500 from either fails with its log.
    /// </summary>
    public Browser CreateBrowser(TestServerFactory? server = null, TestServerFactory? provider = null) => new(new()
    {
        [TestServerFactory.Authority.Host] = (server ?? Server.Factory).CreateReportingHandler(),
        [ProviderHost] = (provider ?? Provider.Factory).CreateReportingHandler(),
    });
}

public abstract class ExternalSignInTests<TDatabase>(ExternalProviderServers<TDatabase> servers) where TDatabase : ServerFixture, new()
{
    private ServerFixture Server => servers.Server;

    /// <summary>
    /// A person new here signs in to an application with the provider: they get an account connected to it (the
    /// provider's user name and verified email, no password), the application gets a code, and the identity token
    /// says how (<c>amr</c> <c>fed</c>). Signing in with it again is the same account.
    /// </summary>
    [SkippableFact]
    public async Task A_new_person_gets_an_account_connected_to_the_provider_and_the_next_sign_in_finds_it()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid profile email");

        var first = await SignInToAppAsync(app, "provider", person);

        var user = await FindByLoginAsync("provider", person.Id);
        Assert.NotNull(user);
        Assert.Equal(user.Id, first.Subject);
        Assert.Equal(["fed"], first.Methods);
        Assert.Equal(person.UserName, user.UserName);
        Assert.Equal(person.Email, user.Email);
        Assert.True(user.EmailConfirmed);
        Assert.Null(user.PasswordHash);

        var second = await SignInToAppAsync(app, "provider", person);
        Assert.Equal(user.Id, second.Subject);
    }

    /// <summary>
    /// An entry set to sign out at the provider (SignOutAtProvider): signing out here goes on to the provider's
    /// end-session endpoint with its identity token as the hint, which signs the person out there without asking, and
    /// comes back to the signed-out page. The sign-out form's answer is the page whose script goes on (a redirect to
    /// another site would break the form's form-action 'self'); the test follows its link.
    /// </summary>
    [SkippableFact]
    public async Task Signing_out_here_signs_out_at_a_provider_set_to_and_comes_back_to_the_signed_out_page()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);

        var signingOut = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"), stopAt: OAuth.IsApp);
        Assert.True(signingOut.Status == HttpStatusCode.OK && signingOut.RedirectTarget is null, $"{(int)signingOut.Status} at {signingOut.Uri}");
        var signedOut = await browser.NavigateAsync(ContinueLink(signingOut), OAuth.IsApp);

        Assert.True(signedOut.Uri.Host == TestServerFactory.Authority.Host && signedOut.Uri.AbsolutePath == "/account/signed-out",
            $"{(int)signedOut.Status} at {signedOut.Uri}:\n{signedOut.Body}");
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await AtProviderAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>An application's sign-out (RP-initiated logout) goes by way of the provider too, and ends at the application.</summary>
    [SkippableFact]
    public async Task An_applications_sign_out_signs_out_at_the_provider_and_ends_at_the_application()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid");
        var browser = servers.CreateBrowser();
        var idToken = await AppIdentityTokenAsync(browser, app, "provider", person);

        var end = await browser.NavigateAsync(QueryHelpers.AddQueryString(await Server.EndpointAsync("end_session_endpoint"), new Dictionary<string, string?>
        {
            ["id_token_hint"] = idToken, ["post_logout_redirect_uri"] = "https://app.test/signed-out", ["state"] = "after-sign-out",
        }), OAuth.IsApp);

        Assert.True(end.RedirectTarget is { } target && target.AbsoluteUri.StartsWith("https://app.test/signed-out", StringComparison.Ordinal),
            $"{(int)end.Status} at {end.Uri} -> {end.RedirectTarget}:\n{end.Body}");
        Assert.Equal("after-sign-out", OAuth.QueryOf(end.RedirectTarget!)["state"]);
        Assert.Equal("/account/login", (await AtProviderAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// The provider's way back (its redirect to /signin-provider/signed-out with the state) leads on to the application
    /// only for the browser that went there: replayed in another browser it ends on the signed-out page, so it cannot
    /// serve anyone as a redirect to the application's URI.
    /// </summary>
    [SkippableFact]
    public async Task The_way_back_from_the_provider_leads_on_only_for_the_browser_that_signed_out()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid");
        var browser = servers.CreateBrowser();
        var idToken = await AppIdentityTokenAsync(browser, app, "provider", person);
        static bool IsWayBack(Uri uri) => uri.Host == TestServerFactory.Authority.Host && uri.AbsolutePath == "/signin-provider/signed-out";

        var atProvider = await browser.NavigateAsync(QueryHelpers.AddQueryString(await Server.EndpointAsync("end_session_endpoint"), new Dictionary<string, string?>
        {
            ["id_token_hint"] = idToken, ["post_logout_redirect_uri"] = "https://app.test/signed-out",
        }), IsWayBack);
        Assert.True(atProvider.RedirectTarget is { } wayBack && IsWayBack(wayBack), $"{(int)atProvider.Status} at {atProvider.Uri} -> {atProvider.RedirectTarget}");

        var replayed = await servers.CreateBrowser().NavigateAsync(atProvider.RedirectTarget!.AbsoluteUri, OAuth.IsApp);
        Assert.True(replayed.RedirectTarget is null && replayed.Uri.AbsolutePath == "/account/signed-out", $"{(int)replayed.Status} at {replayed.Uri} -> {replayed.RedirectTarget}");

        var followed = await browser.NavigateAsync(atProvider.RedirectTarget!.AbsoluteUri, OAuth.IsApp);
        Assert.True(followed.RedirectTarget is { } app2 && OAuth.IsApp(app2), $"{(int)followed.Status} at {followed.Uri} -> {followed.RedirectTarget}");
    }

    /// <summary>"Sign out everywhere" (as any end of this browser's session) forgets the provider's identity token kept in it.</summary>
    [SkippableFact]
    public async Task Signing_out_everywhere_forgets_the_providers_identity_token()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        Assert.Contains(browser.Cookies.GetAllCookies(), c => c.Name.EndsWith("idsrv.provider-session", StringComparison.Ordinal));

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sessions"), selector: "#sign-out-everywhere");

        Assert.DoesNotContain(browser.Cookies.GetAllCookies(), c => c.Name.EndsWith("idsrv.provider-session", StringComparison.Ordinal));
    }

    /// <summary>Where the sign-out page's script goes on to (its link, for browsers without script).</summary>
    private static string ContinueLink(BrowserPage page) =>
        new Uri(page.Uri, page.Document.QuerySelector("a#continue")?.GetAttribute("href") ?? throw new InvalidOperationException(page.Body)).AbsoluteUri;

    /// <summary>
    /// Signed in with the provider, then again with the same account's password in the same browser: that sign-in no
    /// provider vouched for, so signing out of it leaves the provider's session alone.
    /// </summary>
    [SkippableFact]
    public async Task A_later_sign_in_with_a_password_signs_out_here_only()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var (_, password) = await SetPasswordAsync(browser, await AccountPages.OpenAsync(browser, "/account/password"));
        await AccountPages.SignInAsync(browser, (await FindByLoginAsync("provider", person.Id))!.UserName!, password);

        var signedOut = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"), stopAt: OAuth.IsApp);

        Assert.True(signedOut.Uri.Host == TestServerFactory.Authority.Host && signedOut.Uri.AbsolutePath == "/account/logout",
            $"{(int)signedOut.Status} at {signedOut.Uri}");
        Assert.Equal("/account", (await AtProviderAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// The cookie naming the provider session is for the account that signed in with it: carried into a browser where
    /// someone else is signed in (here with a password), their sign-out sends no one to the provider, whose session
    /// of the first person is left alone.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_session_cookie_of_another_account_is_not_signed_out_at_the_provider()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var someoneElse = await Server.CreateUserAsync();
        var otherBrowser = servers.CreateBrowser();
        await AccountPages.SignInAsync(otherBrowser, someoneElse.UserName, someoneElse.Password);
        otherBrowser.Cookies.Add(browser.Cookies.GetAllCookies().Single(c => c.Name.EndsWith("idsrv.provider-session", StringComparison.Ordinal)));

        var signedOut = await otherBrowser.SubmitAsync(await AccountPages.OpenAsync(otherBrowser, "/account/logout"), stopAt: OAuth.IsApp);

        Assert.True(signedOut.Uri.Host == TestServerFactory.Authority.Host && signedOut.Uri.AbsolutePath == "/account/logout"
            && signedOut.Document.QuerySelector("a#continue") is null, $"{(int)signedOut.Status} at {signedOut.Uri}:\n{signedOut.Body}");
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(otherBrowser, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account", (await AtProviderAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// The provider cannot be reached when the person signs out (another instance of this server, whose entry now points
    /// where no discovery document is): the sign-out here is done all the same, on the sign-out page.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_that_cannot_be_reached_at_sign_out_is_passed_by()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        var person = await servers.Provider.CreateUserAsync();
        await using var unreachable = ServerOf(servers.Provider.Factory,
            settings: new Dictionary<string, string?> { ["ExternalProviders:provider:Authority"] = $"https://{ExternalProviderServers<TDatabase>.ProviderHost}/missing/" });
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var atUnreachable = servers.CreateBrowser(unreachable);
        foreach (System.Net.Cookie cookie in browser.Cookies.GetAllCookies())
        {
            atUnreachable.Cookies.Add(cookie);
        }

        var signingOut = await atUnreachable.SubmitAsync(await AccountPages.OpenAsync(atUnreachable, "/account/logout"), stopAt: OAuth.IsApp);
        var signedOut = await atUnreachable.NavigateAsync(ContinueLink(signingOut), OAuth.IsApp);

        Assert.True(signedOut.Uri.Host == TestServerFactory.Authority.Host && signedOut.Uri.AbsolutePath == "/account/signed-out",
            $"{(int)signedOut.Status} at {signedOut.Uri}:\n{signedOut.Body}");
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>A page of the provider, in <paramref name="browser"/>.</summary>
    private static Task<BrowserPage> AtProviderAsync(Browser browser, string path) =>
        browser.NavigateAsync($"https://{ExternalProviderServers<TDatabase>.ProviderHost}{path}", OAuth.IsApp);

    /// <summary>
    /// An application's sign-up button (prompt=create) shows the registration page, which offers the providers that
    /// create accounts (not "partner", which does not); signing up with one is signing in with it, and the new account
    /// goes back to the application.
    /// </summary>
    [SkippableFact]
    public async Task The_registration_page_offers_the_providers_that_create_accounts_and_signs_up_with_one()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid profile");

        var idToken = await SignUpAtAppAsync(Server, servers.CreateBrowser(), app, person, register =>
        {
            var offered = register.Document.QuerySelectorAll("#external-sign-up button[name=provider]").Select(b => b.GetAttribute("value")).ToList();
            Assert.Equal(["down", "provider"], offered.Order());
        });

        var user = await FindByLoginAsync("provider", person.Id);
        Assert.NotNull(user);
        Assert.Equal(user.Id, idToken.GetProperty("sub").GetString());
    }

    /// <summary>
    /// An administrator sees the provider accounts a user signs in with (page and API) and disconnects one: every
    /// session of the user ends, and the audit log says who did it.
    /// </summary>
    [SkippableFact]
    public async Task An_administrator_sees_and_disconnects_a_users_provider_account()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var user = (await FindByLoginAsync("provider", person.Id))!;
        var administrator = await Server.CreateUserAsync(null, "admin");
        var adminBrowser = await AdminPages.SignedInAsync(Server, administrator);
        var list = await adminBrowser.NavigateAsync(AdminPages.Url($"/admin/users?search={Uri.EscapeDataString(user.UserName!)}"));
        Assert.Equal("Provider", list.Document.QuerySelector("td.signs-in-with")?.TextContent);
        var adminPage = await adminBrowser.NavigateAsync(AdminPages.Url($"/admin/users/{user.Id}"));
        Assert.Contains("Sign-in providers", adminPage.Body);
        Assert.NotNull(adminPage.Document.QuerySelector($"form input[name=accountId][value='{person.Id}']"));

        var api = await AdminApiCalls.AdminAsync(Server);
        var logins = JsonDocument.Parse(await api.GetStringAsync($"/api/admin/users/{user.Id}/logins")).RootElement;
        var login = Assert.Single(logins.EnumerateArray());
        Assert.Equal("provider", login.GetProperty("provider").GetString());
        Assert.Equal($"https://{ExternalProviderServers<TDatabase>.ProviderHost}/", login.GetProperty("issuer").GetString());
        Assert.Equal(person.Id, login.GetProperty("account_id").GetString());
        var url = $"/api/admin/users/{user.Id}/logins?provider=provider&account_id={Uri.EscapeDataString(person.Id)}";

        var removed = await api.DeleteAsync(url);

        Assert.Equal(HttpStatusCode.NoContent, removed.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await api.DeleteAsync(url)).StatusCode);
        Assert.Null(await FindByLoginAsync("provider", person.Id));
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        await using var scope = Server.Factory.Services.CreateAsyncScope();
        Assert.True(await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Set<IdentityServer.Admin.AuditEntry>()
            .AnyAsync(e => e.TargetId == user.Id && e.Action == "user.login_removed"));
    }

    /// <summary>
    /// A provider account is recorded with its issuer: an entry pointed at another provider since (whose <c>sub</c>
    /// values mean other people) signs in to none of the accounts connected before.
    /// </summary>
    [SkippableFact]
    public async Task An_account_connected_under_another_issuer_is_not_signed_in()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid");
        await SignInToAppAsync(app, "provider", person);
        await using (var scope = Server.Factory.Services.CreateAsyncScope())
        {
            var logins = scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Set<IdentityUserLogin<string>>();
            var login = await logins.SingleAsync(l => l.LoginProvider == "provider" && l.ProviderKey == person.Id);
            Assert.Equal($"https://{ExternalProviderServers<TDatabase>.ProviderHost}/", login.ProviderDisplayName);
            login.ProviderDisplayName = "https://another-provider.test/";
            await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().SaveChangesAsync();
        }

        var browser = servers.CreateBrowser();
        var refused = await SignInFromLoginPageAsync(browser, "provider", person);

        Assert.Contains("Your Provider account cannot sign in here", refused.Body);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// An account made through a provider has no password: it cannot remove its only way to sign in, sets a password
    /// on the Password page, and may then remove the provider, which no longer signs it in.
    /// </summary>
    [SkippableFact]
    public async Task An_account_keeps_a_way_to_sign_in_and_may_remove_the_provider_once_it_has_a_password()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var user = (await FindByLoginAsync("provider", person.Id))!;

        var providers = await AccountPages.OpenAsync(browser, "/account/sign-in-providers");
        var refused = await browser.SubmitAsync(providers, selector: "form[action*=Remove]");
        Assert.Contains("This is your only way to sign in", refused.Body);
        Assert.NotNull(await FindByLoginAsync("provider", person.Id));

        // Its email changes without a password to give (a recent sign-in instead).
        var newEmail = Unique.Name("moved") + "@example.test";
        var emailPage = await AccountPages.OpenAsync(browser, "/account/email");
        Assert.Null(emailPage.Document.QuerySelector("input[name='Input.Password']"));
        var emailChange = await browser.SubmitAsync(emailPage, new Dictionary<string, string> { ["Input.NewEmail"] = newEmail });
        Assert.Contains("We have sent a confirmation link", emailChange.Body);
        await Mailbox.WaitForAsync(Server, newEmail, "Confirm your new email address");

        var passwordPage = await AccountPages.OpenAsync(browser, "/account/password");
        Assert.Contains("Set a password", passwordPage.Body);
        var (set, password) = await SetPasswordAsync(browser, passwordPage);
        Assert.Contains("Your password has been set", set.Body);
        Assert.Contains("A password was just added", (await Mailbox.WaitForAsync(Server, person.Email, "A way to sign in was added")).TextBody);

        var removed = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sign-in-providers"), selector: "form[action*=Remove]");
        Assert.Contains("Provider is no longer connected", removed.Body);
        Assert.Null(await FindByLoginAsync("provider", person.Id));
        var withPassword = servers.CreateBrowser();
        await AccountPages.SignInAsync(withPassword, user.UserName!, password);
        Assert.Equal("/account", (await AccountPages.OpenAsync(withPassword, "/account")).Uri.AbsolutePath);
        var withProvider = servers.CreateBrowser();
        var refusedNow = await SignInFromLoginPageAsync(withProvider, "provider", person);
        Assert.Contains("An account with the email address of your Provider account exists", refusedNow.Body);
    }

    /// <summary>
    /// A first password adds a way to sign in, as a passkey does: a session older than <c>Accounts:RecentSignIn</c>
    /// (5 minutes) signs in again first.
    /// </summary>
    [SkippableFact]
    public async Task An_older_session_signs_in_again_before_it_sets_a_first_password()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = ServerOf(servers.Provider.Factory, services => services.AddSingleton<TimeProvider>(clock));
        var browser = servers.CreateBrowser(factory);
        var person = await servers.Provider.CreateUserAsync();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var page = await AccountPages.OpenAsync(browser, "/account/password");

        clock.Advance(TimeSpan.FromMinutes(6));
        var (asked, _) = await SetPasswordAsync(browser, page);

        Assert.Equal("/account/login", asked.Uri.AbsolutePath);
        Assert.Null((await FindByLoginAsync("provider", person.Id))?.PasswordHash);
    }

    /// <summary>
    /// Published under a path (<c>Hosting:PathBase</c>), the provider sends the person back to the callback under it,
    /// and the sign-in reaches the application.
    /// </summary>
    [SkippableFact]
    public async Task Under_a_path_base_the_callback_is_under_it()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        const string pathBase = "/identity";
        var settings = await servers.RegisterAtProviderAsync("provider", pathBase);
        settings["Hosting:PathBase"] = pathBase;
        settings["Tokens:Issuer"] = new Uri(TestServerFactory.Authority, pathBase).AbsoluteUri;
        await using var factory = ServerOf(servers.Provider.Factory, settings: settings);
        var server = new AttachedServer(factory, Server.Provider, pathBase);
        var browser = servers.CreateBrowser(factory);
        var person = await servers.Provider.CreateUserAsync();
        var app = await server.CreatePublicClientAsync("openid");
        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, app.ClientId, "openid", pkce), OAuth.IsApp);
        Assert.Equal($"{pathBase}/account/login", login.Uri.AbsolutePath);

        var back = await SignInWithProviderAsync(browser, login, "provider", person);

        Assert.True(back.RedirectTarget is { } target && OAuth.IsApp(target), $"Expected a redirect to the app, got {back.Uri}:\n{back.Body}");
        var tokens = await OAuth.RedeemAsync(server, app, OAuth.QueryOf(back.RedirectTarget!)["code"], pkce);
        Assert.Equal((await FindByLoginAsync("provider", person.Id))?.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    /// <summary>
    /// A provider account whose verified email is an existing account's does not get into that account (its owner
    /// connects the provider after signing in the usual way), and no second account is made.
    /// </summary>
    [SkippableFact]
    public async Task An_existing_account_with_the_same_email_is_not_taken_over()
    {
        var person = await servers.Provider.CreateUserAsync();
        var existing = await Server.CreateUserAsync(person.Email);
        var browser = servers.CreateBrowser();

        var refused = await SignInFromLoginPageAsync(browser, "provider", person);

        Assert.Equal("/account/external-login", refused.Uri.AbsolutePath);
        Assert.Contains("An account with the email address of your Provider account exists", refused.Body);
        Assert.Null(await FindByLoginAsync("provider", person.Id));
        Assert.Empty(await LoginsOfAsync(existing.Id));
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// An address the provider does not vouch for (<c>email_verified</c> false) is not taken: where accounts need a
    /// confirmed email (outside Development), no account is made.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_account_without_a_verified_email_gets_no_account_where_emails_must_be_confirmed()
    {
        var person = await servers.Provider.CreateUserAsync();
        await using (var scope = servers.Provider.Factory.Services.CreateAsyncScope())
        {
            var providerUsers = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            var account = (await providerUsers.FindByIdAsync(person.Id))!;
            account.EmailConfirmed = false;
            Assert.True((await providerUsers.UpdateAsync(account)).Succeeded);
        }

        var browser = servers.CreateBrowser();
        var refused = await SignInFromLoginPageAsync(browser, "provider", person);

        Assert.Contains("Your Provider account has no verified email address", refused.Body);
        Assert.Null(await FindByLoginAsync("provider", person.Id));
    }

    /// <summary>A provider account already connected to one account cannot be connected to another.</summary>
    [SkippableFact]
    public async Task A_provider_account_connects_to_one_account_only()
    {
        var person = await servers.Provider.CreateUserAsync();
        var first = await Server.CreateUserAsync();
        var second = await Server.CreateUserAsync();
        await ConnectAsync(first, person);

        var connected = await ConnectAsync(second, person);

        Assert.Contains("That Partner account is connected to another account here already", connected.Body);
        Assert.Equal(first.Id, (await FindByLoginAsync("partner", person.Id))?.Id);
        Assert.Empty(await LoginsOfAsync(second.Id));
    }

    /// <summary>
    /// A provider that creates no accounts lets in only accounts connected to it: refused before, connected on My
    /// account (after the provider's sign-in and consent), then it signs the account in.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_account_connected_on_my_account_signs_in_to_that_account()
    {
        var person = await servers.Provider.CreateUserAsync();
        var user = await Server.CreateUserAsync();
        var stranger = servers.CreateBrowser();
        var refused = await SignInFromLoginPageAsync(stranger, "partner", person);
        Assert.Contains("No account here is connected to that Partner account", refused.Body);

        var connected = await ConnectAsync(user, person);

        Assert.Contains("Partner is connected", connected.Body);
        Assert.Contains("Signing in with Partner was just added", (await Mailbox.WaitForAsync(Server, user.Email, "A way to sign in was added")).TextBody);
        Assert.Equal(user.Id, (await FindByLoginAsync("partner", person.Id))?.Id);
        var app = await Server.CreatePublicClientAsync("openid");
        Assert.Equal(user.Id, (await SignInToAppAsync(app, "partner", person)).Subject);
    }

    /// <summary>
    /// Connecting takes only a provider answer this account asked for on My account: one from a sign-in started on the
    /// login page (in the same browser) is not connected to whoever is signed in.
    /// </summary>
    [SkippableFact]
    public async Task Only_a_connection_the_account_started_is_connected()
    {
        var person = await servers.Provider.CreateUserAsync();
        var user = await Server.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var atProvider = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/login"),
            selector: "#external-login", button: "button[value=partner]");
        var signIn = await OAuth.SignInAsync(browser, atProvider, person, stopAt: uri => uri.AbsolutePath == "/account/external-login");
        signIn = await browser.SubmitAsync(signIn, button: "button[value=accept]", stopAt: uri => uri.AbsolutePath == "/account/external-login");
        Assert.Equal("/account/external-login", signIn.RedirectTarget?.AbsolutePath);

        var connected = await AccountPages.OpenAsync(browser, "/account/sign-in-providers?handler=Connected");

        Assert.Contains("Signing in with that provider did not work", connected.Body);
        Assert.Empty(await LoginsOfAsync(user.Id));
    }

    /// <summary>The account's second factor is asked after the provider, and the session says both (<c>fed otp mfa</c>).</summary>
    [SkippableFact]
    public async Task An_account_with_a_second_factor_is_asked_for_it_after_the_provider()
    {
        var person = await servers.Provider.CreateUserAsync();
        var user = await Server.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var (key, _) = await AccountPages.EnableAuthenticatorAsync(browser);
        var atProvider = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sign-in-providers"),
            selector: "#connect-provider", button: "button[value=partner]");
        await CompleteAtProviderAsync(browser, atProvider, person);

        var app = await Server.CreatePublicClientAsync("openid");
        var pkce = Pkce.Create();
        var fresh = servers.CreateBrowser();
        var login = await fresh.NavigateAsync(await OAuth.AuthorizeUrlAsync(Server, app.ClientId, "openid", pkce), OAuth.IsApp);
        var secondFactor = await SignInWithProviderAsync(fresh, login, "partner", person);
        Assert.Equal("/account/login/two-factor", secondFactor.Uri.AbsolutePath);
        var back = await fresh.SubmitAsync(secondFactor, new Dictionary<string, string> { ["Input.Code"] = Totp.NextCode(key) }, stopAt: OAuth.IsApp);

        var tokens = await OAuth.RedeemAsync(Server, app, OAuth.QueryOf(back.RedirectTarget!)["code"], pkce);
        var idToken = Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
        Assert.Equal(user.Id, idToken.GetProperty("sub").GetString());
        Assert.Equal(["fed", "otp", "mfa"], Jwt.Strings(idToken.GetProperty("amr")));
    }

    /// <summary>
    /// Declining at the provider, a replayed callback and a forged one each end on a page that says it did not work,
    /// never an error, and sign no one in.
    /// </summary>
    [SkippableFact]
    public async Task Declined_replayed_and_forged_callbacks_sign_no_one_in()
    {
        var person = await servers.Provider.CreateUserAsync();
        var declining = servers.CreateBrowser();
        var atProvider = await declining.SubmitAsync(await AccountPages.OpenAsync(declining, "/account/login"),
            selector: "#external-login", button: "button[value=partner]");
        var consent = await OAuth.SignInAsync(declining, atProvider, person);
        var declined = await declining.SubmitAsync(consent, button: "button[value=deny]");
        Assert.Equal("/account/external-login", declined.Uri.AbsolutePath);
        Assert.Contains("Signing in with that provider did not work", declined.Body);

        var browser = servers.CreateBrowser();
        bool IsCallback(Uri uri) => uri.AbsolutePath == "/signin-provider";
        atProvider = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/login"),
            selector: "#external-login", button: "button[value=provider]");
        var callback = (await OAuth.SignInAsync(browser, atProvider, person, stopAt: IsCallback)).RedirectTarget!;
        await browser.NavigateAsync(callback.AbsoluteUri);
        Assert.Equal("/account", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        var replay = servers.CreateBrowser();
        var replayed = await replay.NavigateAsync(callback.AbsoluteUri);
        Assert.Equal("/account/external-login", replayed.Uri.AbsolutePath);
        Assert.Contains("Signing in with that provider did not work", replayed.Body);
        Assert.Equal("/account/login", (await replay.NavigateAsync(new Uri(TestServerFactory.Authority, "/account").AbsoluteUri)).Uri.AbsolutePath);

        var forged = await servers.CreateBrowser().NavigateAsync(new Uri(TestServerFactory.Authority, "/signin-provider?code=forged&state=forged").AbsoluteUri);
        Assert.Equal(HttpStatusCode.OK, forged.Status);
        Assert.Equal("/account/external-login", forged.Uri.AbsolutePath);
        Assert.Contains("Signing in with that provider did not work", forged.Body);
    }

    /// <summary>Submits the Password page with a new password (no current one: the account has none).</summary>
    private static async Task<(BrowserPage Page, string Password)> SetPasswordAsync(Browser browser, BrowserPage passwordPage)
    {
        var password = Unique.Secret() + "aA1!";
        var page = await browser.SubmitAsync(passwordPage, new Dictionary<string, string>
        {
            ["Input.NewPassword"] = password,
            ["Input.ConfirmPassword"] = password,
        });
        return (page, password);
    }

    /// <summary>Signs in as <paramref name="user"/> with a password and connects the partner provider as <paramref name="person"/>.</summary>
    private async Task<BrowserPage> ConnectAsync(TestUser user, TestUser person)
    {
        var browser = servers.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var providers = await AccountPages.OpenAsync(browser, "/account/sign-in-providers");
        var atProvider = await browser.SubmitAsync(providers, selector: "#connect-provider", button: "button[value=partner]");
        return await CompleteAtProviderAsync(browser, atProvider, person);
    }

    /// <summary>
    /// Signing in again (an application's <c>prompt=login</c> to a browser with a session here) must not be answered by
    /// the provider's own session: the provider is asked for a fresh sign-in, and shows its login page.
    /// </summary>
    [SkippableFact]
    public async Task Signing_in_again_asks_the_provider_for_a_fresh_sign_in()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid");
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);

        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(Server, app.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "login" }), OAuth.IsApp);
        var atProvider = await browser.SubmitAsync(login, selector: "#external-login", button: "button[value=provider]", stopAt: OAuth.IsApp);

        Assert.Equal(ExternalProviderServers<TDatabase>.ProviderHost, atProvider.Uri.Host);
        Assert.Equal("/account/login", atProvider.Uri.AbsolutePath);
        var back = await CompleteAtProviderAsync(browser, atProvider, person);
        Assert.True(back.RedirectTarget is { } target && OAuth.IsApp(target), $"Expected a redirect to the app, got {back.Uri}:\n{back.Body}");
    }

    /// <summary>
    /// A provider that ignores the request for a fresh sign-in (it answers from its session, with an older
    /// <c>auth_time</c>) does not sign the person in again.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_answering_a_fresh_sign_in_from_its_session_is_refused()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        // The provider ignores max_age: it never reaches it.
        await using var provider = ProviderSignedInBefore(TimeSpan.FromMinutes(5));
        await using var factory = ServerOf(provider, services => services.PostConfigureAll<OpenIdConnectOptions>(options =>
        {
            var asked = options.Events.OnRedirectToIdentityProvider;
            options.Events.OnRedirectToIdentityProvider = async context =>
            {
                await asked(context);
                context.ProtocolMessage.MaxAge = null;
            };
        }));
        var browser = servers.CreateBrowser(factory, provider);
        var person = await servers.Provider.CreateUserAsync();
        await SignInFromLoginPageAsync(browser, "provider", person);

        var again = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/login"),
            selector: "#external-login", button: "button[value=provider]");

        Assert.True(again.Uri.AbsolutePath == "/account/external-login", $"{again.Uri}\n{again.Body}");
        Assert.Contains("Signing in with that provider did not work", again.Body);
    }

    /// <summary>
    /// A first sign-in answered from the provider's session is as recent as that session (its <c>auth_time</c>, which
    /// the identity tokens carry too), not as the moment it came back: signing out here and in again through the
    /// provider does not make a sign-in recent enough to set a password.
    /// </summary>
    [SkippableFact]
    public async Task A_sign_in_answered_from_an_older_provider_session_is_not_recent()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        await using var provider = ProviderSignedInBefore(TimeSpan.FromMinutes(10));
        await using var factory = ServerOf(provider);
        var browser = servers.CreateBrowser(factory, provider);
        var person = await servers.Provider.CreateUserAsync();
        await SignInFromLoginPageAsync(browser, "provider", person);
        var page = await AccountPages.OpenAsync(browser, "/account/password");

        var (asked, _) = await SetPasswordAsync(browser, page);

        Assert.Equal("/account/login", asked.Uri.AbsolutePath);
        Assert.Null((await FindByLoginAsync("provider", person.Id))?.PasswordHash);
    }

    /// <summary>
    /// Signing up (prompt=create) with a provider where the person is signed in already: the provider answers from its
    /// session, older than the request, and the new account still goes back to the application (it signed in here after
    /// the request sent it to the registration page), instead of being sent round again.
    /// </summary>
    [SkippableFact]
    public async Task Signing_up_through_an_older_provider_session_goes_back_to_the_application()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        await using var provider = ProviderSignedInBefore(TimeSpan.FromMinutes(10));
        await using var factory = ServerOf(provider);
        var server = new AttachedServer(factory, Server.Provider);
        var browser = servers.CreateBrowser(factory, provider);
        var person = await servers.Provider.CreateUserAsync();
        var app = await server.CreatePublicClientAsync("openid");

        var idToken = await SignUpAtAppAsync(server, browser, app, person);

        // The identity token still says when the person signed in at the provider.
        Assert.True(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - idToken.GetProperty("auth_time").GetInt64() >= 500, idToken.ToString());
    }

    /// <summary>
    /// A provider whose clock is a little behind (within the minute allowed): its fresh sign-in counts as now, so the
    /// application asking for <c>prompt=login</c> gets its code instead of sending the person round again.
    /// </summary>
    [SkippableFact]
    public async Task A_fresh_sign_in_at_a_provider_with_a_slow_clock_satisfies_prompt_login()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        await using var provider = ProviderSignedInBefore(TimeSpan.FromSeconds(30));
        await using var factory = ServerOf(provider);
        var server = new AttachedServer(factory, Server.Provider);
        var browser = servers.CreateBrowser(factory, provider);
        var person = await servers.Provider.CreateUserAsync();
        var app = await server.CreatePublicClientAsync("openid");
        await SignInFromLoginPageAsync(browser, "provider", person);

        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, app.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "login" }), OAuth.IsApp);
        var back = await SignInWithProviderAsync(browser, login, "provider", person);

        Assert.True(back.RedirectTarget is { } target && OAuth.IsApp(target), $"Expected a redirect to the app, got {back.Uri}:\n{back.Body}");
    }

    /// <summary>
    /// A session here lasts <c>Accounts:SessionMaxLifetime</c> from when it began, even when the provider's session
    /// (its <c>auth_time</c>, which this one carries) began longer ago than that.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_session_older_than_the_maximum_lifetime_still_signs_in()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        await using var provider = ProviderSignedInBefore(TimeSpan.FromMinutes(5));
        await using var factory = ServerOf(provider, settings: new Dictionary<string, string?> { ["Accounts:SessionMaxLifetime"] = "00:02:00" });
        var browser = servers.CreateBrowser(factory, provider);
        var person = await servers.Provider.CreateUserAsync();

        await SignInFromLoginPageAsync(browser, "provider", person);

        Assert.Equal("/account", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
    }

    /// <summary>
    /// An application's <c>prompt=login</c> (in the address) reaches the provider on the first round, even with no
    /// session here: the provider's session does not answer it.
    /// </summary>
    [SkippableFact]
    public async Task Prompt_login_without_a_session_here_asks_the_provider_for_a_fresh_sign_in()
    {
        var person = await servers.Provider.CreateUserAsync();
        var app = await Server.CreatePublicClientAsync("openid");
        var browser = servers.CreateBrowser();
        var providerLogin = await browser.NavigateAsync($"https://{ExternalProviderServers<TDatabase>.ProviderHost}/account/login");
        await browser.SubmitAsync(providerLogin, new Dictionary<string, string> { ["Input.UserName"] = person.UserName, ["Input.Password"] = person.Password });

        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(Server, app.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "login" }), OAuth.IsApp);
        var atProvider = await browser.SubmitAsync(login, selector: "#external-login", button: "button[value=provider]", stopAt: OAuth.IsApp);

        Assert.Equal(ExternalProviderServers<TDatabase>.ProviderHost, atProvider.Uri.Host);
        Assert.Equal("/account/login", atProvider.Uri.AbsolutePath);
        var back = await CompleteAtProviderAsync(browser, atProvider, person);
        Assert.True(back.RedirectTarget is { } target && OAuth.IsApp(target), $"Expected a redirect to the app, got {back.Uri}:\n{back.Body}");
    }

    /// <summary>The provider on its database with a clock <paramref name="behind"/>: its sessions began that long ago.</summary>
    private TestServerFactory ProviderSignedInBefore(TimeSpan behind) =>
        new(new Dictionary<string, string?>(servers.Provider.Settings),
            testServices: services => services.AddSingleton<TimeProvider>(new TestClock(DateTimeOffset.UtcNow - behind)));

    /// <summary>
    /// Another server under test on its database (its settings, replaced by <paramref name="settings"/>), reaching
    /// <paramref name="provider"/>, with <paramref name="more"/> test services.
    /// </summary>
    private TestServerFactory ServerOf(TestServerFactory provider, Action<IServiceCollection>? more = null,
        IReadOnlyDictionary<string, string?>? settings = null)
    {
        var all = Server.Settings.Concat(settings ?? new Dictionary<string, string?>()).GroupBy(p => p.Key).Select(g => g.Last());
        return new(new Dictionary<string, string?>(all), testServices: services =>
        {
            services.ConfigureAll<OpenIdConnectOptions>(options => options.BackchannelHttpHandler = provider.CreateReportingHandler());
            more?.Invoke(services);
        });
    }

    /// <summary>A provider that cannot be reached: the login page and My account say so, no error.</summary>
    [SkippableFact]
    public async Task A_provider_that_cannot_be_reached_is_reported_on_the_page()
    {
        var browser = servers.CreateBrowser();
        var login = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/login"), selector: "#external-login", button: "button[value=down]");
        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        Assert.Contains("That sign-in provider is not available right now", login.Body);

        var user = await Server.CreateUserAsync();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var connect = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sign-in-providers"),
            selector: "#connect-provider", button: "button[value=down]");
        Assert.Contains("That sign-in provider is not available right now", connect.Body);
    }

    /// <summary>
    /// A provider found unreachable is not asked again for a while: people pressing its button meanwhile are told at
    /// once, and cannot make the server send request after request to it.
    /// </summary>
    [SkippableFact]
    public async Task An_unreachable_provider_is_not_asked_again_at_every_press()
    {
        Skip.If(Server.UnavailableReason is not null, Server.UnavailableReason);
        var asked = 0;
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(Server.Settings), testServices: services =>
            services.ConfigureAll<OpenIdConnectOptions>(options => options.BackchannelHttpHandler =
                new CountingHandler(() => Interlocked.Increment(ref asked), servers.Provider.Factory.CreateReportingHandler())));
        var browser = servers.CreateBrowser(factory);

        for (var press = 0; press < 3; press++)
        {
            var login = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/login"), selector: "#external-login", button: "button[value=down]");
            Assert.Contains("That sign-in provider is not available right now", login.Body);
        }

        Assert.InRange(asked, 1, 2); // the configuration manager may try a failed read once more itself
    }

    private sealed class CountingHandler(Action count, HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            count();
            return base.SendAsync(request, cancellationToken);
        }
    }

    /// <summary>
    /// A provider removed from the configuration signs no one in, so it does not count as another way to sign in; it
    /// can still be removed from the account.
    /// </summary>
    [SkippableFact]
    public async Task A_provider_no_longer_configured_is_not_a_way_to_sign_in()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        ApplicationUser user;
        await using (var scope = Server.Factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            user = (await users.FindByLoginAsync("provider", person.Id))!;
            Assert.True((await users.AddLoginAsync(user, new UserLoginInfo("retired", Unique.Name("key"), "Retired"))).Succeeded);
        }

        var page = await AccountPages.OpenAsync(browser, "/account/sign-in-providers");
        var refused = await browser.SubmitAsync(page, selector: "form[action*=Remove]:has(input[value=provider])");
        var removed = await browser.SubmitAsync(page, selector: "form[action*=Remove]:has(input[value=retired])");

        Assert.Contains("This is your only way to sign in", refused.Body);
        Assert.Equal(["provider"], (await LoginsOfAsync(user.Id)).Select(l => l.LoginProvider));
        Assert.Contains("retired is no longer connected", removed.Body);
    }

    /// <summary>
    /// A passkey counts as a way to sign in, so the provider may go while the account has one; and then the passkey may
    /// not go: it is the last way, as a provider is when it is the last (the account would be left to the password reset,
    /// which needs a confirmed email).
    /// </summary>
    [SkippableFact]
    public async Task A_passkey_that_is_the_accounts_last_way_to_sign_in_is_not_removed()
    {
        var person = await servers.Provider.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await SignInFromLoginPageAsync(browser, "provider", person);
        await using (var scope = Server.Factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            var user = (await users.FindByLoginAsync("provider", person.Id))!;
            var passkey = new UserPasskeyInfo(RandomNumberGenerator.GetBytes(16), RandomNumberGenerator.GetBytes(77), DateTimeOffset.UtcNow, 0, null,
                isUserVerified: true, isBackupEligible: false, isBackedUp: false, attestationObject: [], clientDataJson: []) { Name = "Laptop" };
            Assert.True((await users.AddOrUpdatePasskeyAsync(user, passkey)).Succeeded);
        }

        var providerRemoved = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sign-in-providers"), selector: "form[action*=Remove]");
        Assert.Contains("Provider is no longer connected", providerRemoved.Body);

        var refused = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/passkeys"), selector: "form[action*=Remove]");
        Assert.Contains("This is your only way to sign in", refused.Body);
        Assert.Contains("Laptop", (await AccountPages.OpenAsync(browser, "/account/passkeys")).Body);
    }

    /// <summary>
    /// An answer to a connection started on My account is not taken as a sign-in (which could make a new account of
    /// it): only the page that started it takes it.
    /// </summary>
    [SkippableFact]
    public async Task A_connection_answer_is_not_taken_as_a_sign_in()
    {
        var person = await servers.Provider.CreateUserAsync();
        var user = await Server.CreateUserAsync();
        var browser = servers.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var atProvider = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sign-in-providers"),
            selector: "#connect-provider", button: "button[value=provider]");
        var answered = await OAuth.SignInAsync(browser, atProvider, person, stopAt: uri => uri.AbsolutePath == "/account/sign-in-providers");
        Assert.Equal("/account/sign-in-providers", answered.RedirectTarget?.AbsolutePath);

        var taken = await AccountPages.OpenAsync(browser, "/account/external-login");

        Assert.Contains("Signing in with that provider did not work", taken.Body);
        Assert.Null(await FindByLoginAsync("provider", person.Id));
    }

    /// <summary>Opens the login page and signs in there with <paramref name="provider"/> as <paramref name="person"/>.</summary>
    private static async Task<BrowserPage> SignInFromLoginPageAsync(Browser browser, string provider, TestUser person) =>
        await SignInWithProviderAsync(browser, await AccountPages.OpenAsync(browser, "/account/login"), provider, person);

    /// <summary>The login page's button for <paramref name="provider"/>, then the provider's own sign-in (and consent).</summary>
    private static async Task<BrowserPage> SignInWithProviderAsync(Browser browser, BrowserPage loginPage, string provider, TestUser person)
    {
        var atProvider = await browser.SubmitAsync(loginPage, selector: "#external-login", button: $"button[value={provider}]", stopAt: OAuth.IsApp);
        return await CompleteAtProviderAsync(browser, atProvider, person);
    }

    private static async Task<BrowserPage> CompleteAtProviderAsync(Browser browser, BrowserPage atProvider, TestUser person)
    {
        Assert.True(atProvider.Uri.Host == ExternalProviderServers<TDatabase>.ProviderHost, $"Expected the provider's login page, got {atProvider.Uri}:\n{atProvider.Body}");
        var page = await OAuth.SignInAsync(browser, atProvider, person);
        if (page.Uri.Host == ExternalProviderServers<TDatabase>.ProviderHost && page.Document.QuerySelector("button[value=accept]") is not null)
        {
            page = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: OAuth.IsApp);
        }

        return page;
    }

    /// <summary>Signs in to <paramref name="app"/> with the provider in a new browser; the identity token's <c>sub</c> and <c>amr</c>.</summary>
    private async Task<(string Subject, string[] Methods)> SignInToAppAsync(TestClient app, string provider, TestUser person)
    {
        var idToken = Jwt.Payload(await AppIdentityTokenAsync(servers.CreateBrowser(), app, provider, person));
        return (idToken.GetProperty("sub").GetString()!, Jwt.Strings(idToken.GetProperty("amr")));
    }

    /// <summary>
    /// An application's sign-up (prompt=create) on <paramref name="server"/>: the registration page, looked at by
    /// <paramref name="onRegistrationPage"/>, its button for the provider, the provider's sign-in; the payload of the
    /// identity token the application gets.
    /// </summary>
    private static async Task<JsonElement> SignUpAtAppAsync(ServerFixture server, Browser browser, TestClient app, TestUser person,
        Action<BrowserPage>? onRegistrationPage = null)
    {
        var pkce = Pkce.Create();
        var register = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, app.ClientId, app.Document.Scope!, pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "create" }), OAuth.IsApp);
        Assert.Equal("/account/register", register.Uri.AbsolutePath);
        onRegistrationPage?.Invoke(register);
        var atProvider = await browser.SubmitAsync(register, selector: "#external-sign-up", button: "button[value=provider]", stopAt: OAuth.IsApp);
        var back = await CompleteAtProviderAsync(browser, atProvider, person);

        Assert.True(back.RedirectTarget is { } target && OAuth.IsApp(target), $"Expected a redirect to the app, got {back.Uri}:\n{back.Body}");
        var tokens = await OAuth.RedeemAsync(server, app, OAuth.QueryOf(back.RedirectTarget!)["code"], pkce);
        return Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
    }

    /// <summary>Signs in to <paramref name="app"/> with the provider in <paramref name="browser"/>; the identity token the app gets.</summary>
    private async Task<string> AppIdentityTokenAsync(Browser browser, TestClient app, string provider, TestUser person)
    {
        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(Server, app.ClientId, app.Document.Scope!, pkce), OAuth.IsApp);
        var back = await SignInWithProviderAsync(browser, login, provider, person);
        Assert.True(back.RedirectTarget is { } target && OAuth.IsApp(target), $"Expected a redirect to the app, got {back.Uri}:\n{back.Body}");

        var tokens = await OAuth.RedeemAsync(Server, app, OAuth.QueryOf(back.RedirectTarget!)["code"], pkce);
        return tokens.GetProperty("id_token").GetString()!;
    }

    private async Task<ApplicationUser?> FindByLoginAsync(string provider, string key)
    {
        await using var scope = Server.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>().FindByLoginAsync(provider, key);
    }

    private async Task<IList<UserLoginInfo>> LoginsOfAsync(string userId)
    {
        await using var scope = Server.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        return await users.GetLoginsAsync((await users.FindByIdAsync(userId))!);
    }
}

public sealed class SqliteExternalSignInTests(ExternalProviderServers<SqliteServerFixture> servers)
    : ExternalSignInTests<SqliteServerFixture>(servers), IClassFixture<ExternalProviderServers<SqliteServerFixture>>;

public sealed class PostgreSqlExternalSignInTests(ExternalProviderServers<PostgreSqlServerFixture> servers)
    : ExternalSignInTests<PostgreSqlServerFixture>(servers), IClassFixture<ExternalProviderServers<PostgreSqlServerFixture>>;
