using IdentityServer.Tests.Infrastructure;
using Microsoft.Playwright;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// Passkeys in a real browser: Debian's Chromium driven by Playwright, with Chromium's virtual authenticator (CDP
/// WebAuthn domain) standing in for a platform authenticator, against the real server as a process on a loopback port
/// (WebAuthn needs a secure context: http://localhost is one). SQLite only: the database plays no part here that the
/// other tests do not cover on PostgreSQL.
/// </summary>
[Collection(BrowserTestsCollection.Name)]
public sealed class PasskeyBrowserTests
{
    private const string RedirectUri = "https://passkey.app.test/callback";

    [SkippableFact]
    public async Task A_passkey_added_in_my_account_signs_in_without_a_password_and_completes_an_authorization_code_flow()
    {
        SystemChromium.SkipUnlessInstalled();
        var userName = Unique.Name("pk");
        var password = Unique.Secret();
        var clientId = Unique.Name("pk-client");
        var mail = Path.Combine(Path.GetTempPath(), "idsrv-mail", Guid.NewGuid().ToString("N"));
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["Seed:Users:90:user_name"] = userName,
            ["Seed:Users:90:email"] = $"{userName}@example.test",
            ["Seed:Users:90:password"] = password,
            ["Seed:Users:90:email_verified"] = "true",
            ["Seed:Clients:90:client_id"] = clientId,
            ["Seed:Clients:90:token_endpoint_auth_method"] = "none",
            ["Seed:Clients:90:grant_types:0"] = "authorization_code",
            ["Seed:Clients:90:redirect_uris:0"] = RedirectUri,
            ["Seed:Clients:90:scope"] = "openid profile",
            ["Seed:Clients:90:consent_type"] = "implicit",
            ["Email:PickupDirectory"] = mail,
        });
        // "localhost", not 127.0.0.1: a WebAuthn relying party id is a domain name.
        var origin = $"http://localhost:{server.Port}";

        using var playwright = await Playwright.CreateAsync();
        await using var chromium = await SystemChromium.LaunchAsync(playwright);
        var context = await chromium.NewContextAsync();
        var page = await context.NewPageAsync();
        var cdp = await context.NewCDPSessionAsync(page);
        await cdp.SendAsync("WebAuthn.enable");
        var authenticator = await cdp.SendAsync("WebAuthn.addVirtualAuthenticator", new Dictionary<string, object>
        {
            ["options"] = new Dictionary<string, object>
            {
                ["protocol"] = "ctap2", ["transport"] = "internal", ["hasResidentKey"] = true, ["hasUserVerification"] = true,
                ["isUserVerified"] = true, ["automaticPresenceSimulation"] = true,
            },
        });
        var consoleErrors = new List<string>();
        page.Console += (_, message) => { if (message.Type == "error") { consoleErrors.Add(message.Text); } };

        // Sign in with the password and add a passkey in My account.
        await page.GotoAsync($"{origin}/account/login");
        await page.FillAsync("#Input_UserName", userName);
        await page.FillAsync("#Input_Password", password);
        await page.ClickAsync("#login-form button[type=submit]");
        await ExpectAsync(page, server, () => page.WaitForURLAsync($"{origin}/"), $"No arrival at {origin}/ after signing in");
        await page.GotoAsync($"{origin}/account/passkeys");

        // A name longer than 100 characters, sent past the field's maxlength, is refused and no passkey is added.
        await page.EvalOnSelectorAsync("#Name", "input => input.removeAttribute('maxlength')");
        await page.FillAsync("#Name", new string('n', 101));
        await page.ClickAsync("#passkey-add-button");
        await ExpectAsync(page, server, "text=A passkey's name has at most 100 characters.");
        Assert.Equal(0, await page.Locator(".passkey-name").CountAsync());
        // The authenticator made a credential the server did not keep: forgotten, so it is not offered at sign-in.
        await cdp.SendAsync("WebAuthn.clearCredentials", new Dictionary<string, object>
        {
            ["authenticatorId"] = authenticator!.Value.GetProperty("authenticatorId").GetString()!,
        });

        await page.FillAsync("#Name", "Virtual authenticator");
        await page.ClickAsync("#passkey-add-button");
        await ExpectAsync(page, server, ".passkey-name:has-text('Virtual authenticator')");
        Assert.Contains("Your passkey has been added", await page.ContentAsync());
        // Its owner hears of it, as of any new way to sign in.
        Assert.Contains("A passkey was just added", (await Mailbox.WaitForAsync(mail, $"{userName}@example.test", "A way to sign in was added")).TextBody);

        // Sign out.
        await page.GotoAsync($"{origin}/account/logout");
        await page.ClickAsync("main form button[type=submit]");
        await ExpectAsync(page, server, "text=You are signed out");

        // An application asks for a sign-in; the user picks the passkey, no password.
        var flow = new BrowserCodeFlow(origin, clientId, RedirectUri, "openid profile");
        await page.GotoAsync(flow.AuthorizeUrl);
        Assert.StartsWith($"{origin}/account/login", page.Url);
        var code = await flow.CodeAfterAsync(page, () => page.ClickAsync("#passkey-login-button"), () => server.Output);
        var id = await flow.RedeemForIdentityTokenAsync(code);
        Assert.Equal(userName, id.GetProperty("preferred_username").GetString());
        Assert.Equal(["hwk", "mfa"], id.GetProperty("amr").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal).ToArray());
        Assert.Equal("phr", id.GetProperty("acr").GetString());
        Assert.DoesNotContain(consoleErrors, e => e.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Waits for <paramref name="selector"/>; on a timeout, fails with what the page shows and the server's log.</summary>
    private static Task ExpectAsync(IPage page, ServerProcess server, string selector) =>
        ExpectAsync(page, server, () => page.WaitForSelectorAsync(selector, new() { Timeout = 15_000 }), $"'{selector}' did not appear");

    /// <summary>Runs a wait of the page's; on a timeout, fails with <paramref name="failure"/>, what the page shows and the server's log.</summary>
    private static async Task ExpectAsync(IPage page, ServerProcess server, Func<Task> wait, string failure)
    {
        try
        {
            await wait();
        }
        catch (TimeoutException)
        {
            Assert.Fail($"{failure}; at {page.Url}:\n{await page.InnerTextAsync("main")}\n{server.Output}");
        }
    }
}
