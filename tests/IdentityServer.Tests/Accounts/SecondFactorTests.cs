using System.Text.Json;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Accounts;

/// <summary>Authenticator apps (TOTP), recovery codes, acr_values and amr; connected apps.</summary>
public abstract class SecondFactorTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task An_enrolled_authenticator_is_asked_after_the_password_and_the_id_token_says_how()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var setupBrowser = server.CreateBrowser();
        await AccountPages.SignInAsync(setupBrowser, user.UserName, user.Password);
        var (key, _) = await AccountPages.EnableAuthenticatorAsync(setupBrowser);
        Assert.Contains("Two-factor sign-in is <strong>on</strong>", (await AccountPages.OpenAsync(setupBrowser, "/account/two-factor")).Body);

        var browser = server.CreateBrowser();
        var pkce = Pkce.Create();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce), OAuth.IsApp);
        var codePage = await OAuth.SignInAsync(browser, login, user);
        Assert.Equal("/account/login/two-factor", codePage.Uri.AbsolutePath);

        var wrong = await browser.SubmitAsync(codePage, new Dictionary<string, string> { ["Input.Code"] = WrongCode(key) }, stopAt: OAuth.IsApp);
        Assert.Contains("That code is not valid.", wrong.Body);
        var callback = await browser.SubmitAsync(wrong, new Dictionary<string, string> { ["Input.Code"] = Totp.NextCode(key) }, stopAt: OAuth.IsApp);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget), $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
        var id = Jwt.Payload((await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce)).GetProperty("id_token").GetString()!);
        Assert.Equal(["mfa", "otp", "pwd"], Amr(id));
        Assert.Equal("mfa", id.GetProperty("acr").GetString());
        Assert.True(id.TryGetProperty("auth_time", out _));
    }

    /// <summary>Whoever holds the app passes the second step from now on: the owner hears of it, as of a passkey.</summary>
    [SkippableFact]
    public async Task Turning_the_authenticator_on_tells_the_account_s_address()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        await AccountPages.EnableAuthenticatorAsync(browser);

        var notice = await Mailbox.WaitForAsync(server, user.Email, "A way to sign in was added");
        Assert.Contains("An authenticator app was just added", notice.TextBody);
        Assert.Contains(new Uri(TestServerFactory.Authority, "/account/two-factor").AbsoluteUri, notice.TextBody);
    }

    [SkippableFact]
    public async Task A_recovery_code_signs_in_once()
    {
        var user = await server.CreateUserAsync();
        var setupBrowser = server.CreateBrowser();
        await AccountPages.SignInAsync(setupBrowser, user.UserName, user.Password);
        var (_, codes) = await AccountPages.EnableAuthenticatorAsync(setupBrowser);

        var first = await SignInWithRecoveryCodeAsync(server.CreateBrowser(), user, codes[0]);
        var second = await SignInWithRecoveryCodeAsync(server.CreateBrowser(), user, codes[0]);
        var another = await SignInWithRecoveryCodeAsync(server.CreateBrowser(), user, codes[1]);

        Assert.Equal("/", first.Uri.AbsolutePath);
        Assert.Contains("That recovery code is not valid.", second.Body);
        Assert.Equal("/", another.Uri.AbsolutePath);
        Assert.Contains("<strong>8</strong> recovery codes left", (await AccountPages.OpenAsync(another.Browser, "/account/two-factor")).Body);
    }

    [SkippableFact]
    public async Task Acr_values_mfa_sends_a_password_session_back_for_the_second_factor()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var (key, _) = await AccountPages.EnableAuthenticatorAsync(browser);
        var pkce = Pkce.Create();

        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["acr_values"] = "mfa" }), OAuth.IsApp);
        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        Assert.Contains("The application asks for a stronger sign-in", login.Body);
        var codePage = await OAuth.SignInAsync(browser, login, user);
        var callback = await browser.SubmitAsync(codePage, new Dictionary<string, string> { ["Input.Code"] = Totp.NextCode(key) }, stopAt: OAuth.IsApp);

        var id = Jwt.Payload((await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce)).GetProperty("id_token").GetString()!);
        Assert.Equal("mfa", id.GetProperty("acr").GetString());
        Assert.Contains("mfa", Amr(id));
    }

    [SkippableFact]
    public async Task Acr_values_mfa_for_a_user_without_a_second_factor_ends_with_unmet_authentication_requirements()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();

        var result = await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["acr_values"] = "mfa" }), user);

        Assert.Equal("unmet_authentication_requirements", result["error"]);
    }

    [SkippableFact]
    public async Task A_password_sign_in_has_amr_pwd_and_acr_pwd_and_discovery_lists_the_acr_values()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();

        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid");

        var id = Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
        Assert.Equal(["pwd"], Amr(id));
        Assert.Equal("pwd", id.GetProperty("acr").GetString());
        var discovery = await OAuth.ReadJsonAsync(await server.CreateClient().GetAsync("/.well-known/openid-configuration"));
        Assert.Equal(["pwd", "mfa", "phr"], discovery.GetProperty("acr_values_supported").EnumerateArray().Select(e => e.GetString()!).ToArray());
    }

    [SkippableFact]
    public async Task Connected_apps_lists_each_app_with_its_scopes_and_removing_one_stops_its_refresh_token()
    {
        var user = await server.CreateUserAsync();
        var kept = await server.CreatePublicClientAsync();
        var removed = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        var keptTokens = await OAuth.SignInAndRedeemAsync(server, browser, kept, user, "openid offline_access");
        var removedTokens = await OAuth.SignInAndRedeemAsync(server, browser, removed, user, "openid profile offline_access");
        await OAuth.SignInAndRedeemAsync(server, browser, removed, user, "openid email offline_access");

        var apps = await AccountPages.OpenAsync(browser, "/account/apps");
        var rows = apps.Document.QuerySelectorAll("li.app");
        Assert.Equal(2, rows.Length);
        var row = rows.Single(r => r.GetAttribute("data-client-id") == removed.ClientId);
        Assert.Equal("email, offline_access, openid, profile", row.QuerySelector(".scopes")!.TextContent.Trim());
        Assert.Contains("since ", row.TextContent);

        var after = await browser.SubmitAsync(apps, selector: $"li.app[data-client-id='{removed.ClientId}'] form");

        Assert.Contains("no longer has access", after.Body);
        Assert.Single(after.Document.QuerySelectorAll("li.app"));
        var refused = await OAuth.RefreshAsync(server, removed, removedTokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refused)).GetProperty("error").GetString());
        Assert.True((await OAuth.RefreshAsync(server, kept, keptTokens.GetProperty("refresh_token").GetString()!)).IsSuccessStatusCode);
    }

    /// <summary>RFC 6238 5.2: a code that signed in once does not sign in again, in another browser or the same one.</summary>
    [SkippableFact]
    public async Task An_authenticator_code_that_was_used_is_refused_the_second_time()
    {
        var user = await server.CreateUserAsync();
        var setup = server.CreateBrowser();
        await AccountPages.SignInAsync(setup, user.UserName, user.Password);
        var (key, _) = await AccountPages.EnableAuthenticatorAsync(setup);
        var code = Totp.NextCode(key);

        var first = server.CreateBrowser();
        var firstCodePage = await AccountPages.SignInAsync(first, user.UserName, user.Password);
        var signedIn = await first.SubmitAsync(firstCodePage, new Dictionary<string, string> { ["Input.Code"] = code });
        var second = server.CreateBrowser();
        var secondCodePage = await AccountPages.SignInAsync(second, user.UserName, user.Password);
        var replayed = await second.SubmitAsync(secondCodePage, new Dictionary<string, string> { ["Input.Code"] = code });

        Assert.Equal("/", signedIn.Uri.AbsolutePath);
        Assert.Equal("/account/login/two-factor", replayed.Uri.AbsolutePath);
        Assert.Contains("That code is not valid.", replayed.Body);
        // A later code still works: the refusal is the replay's, not a lockout.
        var later = await second.SubmitAsync(replayed, new Dictionary<string, string> { ["Input.Code"] = Totp.Code(key, DateTimeOffset.UtcNow.AddSeconds(60)) });
        Assert.Equal("/", later.Uri.AbsolutePath);

        // A new key starts afresh: turned off and on again at once, its current code (an earlier step) is accepted.
        await setup.SubmitAsync(await AccountPages.OpenAsync(setup, "/account/two-factor"), selector: "form[action*='handler=Disable']");
        var (newKey, _) = await AccountPages.EnableAuthenticatorAsync(setup);
        Assert.NotEqual(key, newKey);
    }

    /// <summary>
    /// A remembered device skips the code only while the account's security stamp is the one it was remembered with:
    /// a password change elsewhere (which ends every other session) makes it ask again at once, not after
    /// Accounts:SessionValidationInterval.
    /// </summary>
    [SkippableFact]
    public async Task A_remembered_device_is_asked_for_the_code_again_after_a_password_change_elsewhere()
    {
        var user = await server.CreateUserAsync();
        var setup = server.CreateBrowser();
        await AccountPages.SignInAsync(setup, user.UserName, user.Password);
        var (key, _) = await AccountPages.EnableAuthenticatorAsync(setup);
        var device = server.CreateBrowser();
        var codePage = await AccountPages.SignInAsync(device, user.UserName, user.Password);
        Assert.Equal("/", (await device.SubmitAsync(codePage, new Dictionary<string, string>
        {
            ["Input.Code"] = Totp.NextCode(key), ["Input.RememberDevice"] = "true",
        })).Uri.AbsolutePath);
        await device.SubmitAsync(await AccountPages.OpenAsync(device, "/account/logout"), selector: "main form");
        Assert.Equal("/", (await AccountPages.SignInAsync(device, user.UserName, user.Password)).Uri.AbsolutePath); // remembered

        const string newPassword = "changed-passphrase-2";
        var changed = await setup.SubmitAsync(await AccountPages.OpenAsync(setup, "/account/password"), new Dictionary<string, string>
        {
            ["Input.CurrentPassword"] = user.Password, ["Input.NewPassword"] = newPassword, ["Input.ConfirmPassword"] = newPassword,
        });
        Assert.Contains("Your password has been changed", changed.Body);

        var again = await AccountPages.SignInAsync(device, user.UserName, newPassword);
        Assert.Equal("/account/login/two-factor", again.Uri.AbsolutePath);
    }

    private static string[] Amr(JsonElement idToken) => [.. idToken.GetProperty("amr").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal)];

    private static string WrongCode(string key)
    {
        var now = DateTimeOffset.UtcNow;
        var valid = Enumerable.Range(-3, 7).Select(i => Totp.Code(key, now.AddSeconds(30 * i))).ToHashSet();
        return Enumerable.Range(0, 1000).Select(i => i.ToString("D6", System.Globalization.CultureInfo.InvariantCulture)).First(c => !valid.Contains(c));
    }

    private async Task<(Uri Uri, string Body, Browser Browser)> SignInWithRecoveryCodeAsync(Browser browser, TestUser user, string code)
    {
        var codePage = await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        Assert.Equal("/account/login/two-factor", codePage.Uri.AbsolutePath);
        var recovery = await browser.NavigateAsync(new Uri(codePage.Uri, codePage.Document.QuerySelector("a[href^='/account/login/recovery-code']")!.GetAttribute("href")!).AbsoluteUri);
        var page = await browser.SubmitAsync(recovery, new Dictionary<string, string> { ["RecoveryCode"] = code });
        return (page.Uri, page.Body, browser);
    }
}

public sealed class SqliteSecondFactorTests(SqliteAccountsFixture server) : SecondFactorTests<SqliteAccountsFixture>(server), IClassFixture<SqliteAccountsFixture>;

public sealed class PostgreSqlSecondFactorTests(PostgreSqlAccountsFixture server) : SecondFactorTests<PostgreSqlAccountsFixture>(server), IClassFixture<PostgreSqlAccountsFixture>;
