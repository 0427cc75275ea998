using System.Text.Json;
using System.Text.Json.Nodes;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.IdentityModel.Tokens;
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
        IRequest? passkeySignIn = null;
        page.Request += (_, request) =>
        {
            if (request.Method == "POST" && QueryHelpers.ParseQuery(new Uri(request.Url).Query).TryGetValue("handler", out var handler) && handler == "Passkey")
            {
                passkeySignIn = request;
            }
        };
        var code = await flow.CodeAfterAsync(page, () => page.ClickAsync("#passkey-login-button"), () => server.Output);
        var id = await flow.RedeemForIdentityTokenAsync(code);
        Assert.Equal(userName, id.GetProperty("preferred_username").GetString());
        Assert.Equal(["hwk", "mfa"], id.GetProperty("amr").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal).ToArray());
        Assert.Equal("phr", id.GetProperty("acr").GetString());
        Assert.DoesNotContain(consoleErrors, e => e.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase));

        // The same sign-in posted again, cookies and all (as whoever saw it in a log could), opens no session: each
        // assertion signs in once, whatever the authenticator's signature counter says. A synced passkey always sends 0,
        // which tells nothing; the virtual authenticator counts, so the stored counter is put back to what such a
        // passkey leaves, and the counter cannot be what refuses the replay.
        Assert.NotNull(passkeySignIn);
        await using (var database = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={server.DatabasePath}"))
        {
            await database.OpenAsync();
            using var uncount = database.CreateCommand();
            uncount.CommandText = "UPDATE AspNetUserPasskeys SET Data = json_set(Data, '$.SignCount', 0)";
            Assert.Equal(1, await uncount.ExecuteNonQueryAsync());
        }

        var headers = await passkeySignIn.AllHeadersAsync();
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false });
        using var replay = new HttpRequestMessage(HttpMethod.Post, passkeySignIn.Url) { Content = new StringContent(passkeySignIn.PostData!) };
        replay.Content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(headers["content-type"]);
        replay.Headers.Add("Cookie", headers["cookie"]);
        var replayed = await http.SendAsync(replay);
        Assert.Equal(System.Net.HttpStatusCode.OK, replayed.StatusCode);
        Assert.Contains("That passkey could not sign you in.", await replayed.Content.ReadAsStringAsync());

        // Nor when the posted credential carries a decoy: Identity reads its JSON without regard to case, the last of
        // two members winning, so a "response" naming a fresh challenge ahead of the real one renamed "Response" would
        // pass a record of what the post says; the record is of what Identity verified.
        var form = QueryHelpers.ParseQuery(passkeySignIn.PostData!);
        var credential = JsonNode.Parse(form["PasskeyCredential"].ToString())!.AsObject();
        var decoy = credential["response"]!.DeepClone().AsObject();
        decoy["clientDataJSON"] = Base64UrlEncoder.Encode(JsonSerializer.Serialize(new
        {
            type = "webauthn.get", challenge = Base64UrlEncoder.Encode(Guid.NewGuid().ToByteArray()), origin,
        }));
        var withDecoy = new JsonObject { ["response"] = decoy };
        foreach (var (name, value) in credential.ToList())
        {
            credential.Remove(name);
            withDecoy[name == "response" ? "Response" : name] = value;
        }

        using var decoyed = new HttpRequestMessage(HttpMethod.Post, passkeySignIn.Url)
        {
            Content = new FormUrlEncodedContent(form.ToDictionary(f => f.Key, f => f.Key == "PasskeyCredential" ? withDecoy.ToJsonString() : f.Value.ToString())),
        };
        decoyed.Headers.Add("Cookie", headers["cookie"]);
        var decoyReplayed = await http.SendAsync(decoyed);
        Assert.Equal(System.Net.HttpStatusCode.OK, decoyReplayed.StatusCode);
        Assert.Contains("That passkey could not sign you in.", await decoyReplayed.Content.ReadAsStringAsync());
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
