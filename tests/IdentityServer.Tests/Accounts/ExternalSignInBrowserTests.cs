using IdentityServer.Tests.Infrastructure;
using Microsoft.Playwright;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// Signing in with another provider in a real browser (Debian's Chromium), between two server processes on loopback
/// ports: the provider at 127.0.0.1 and the server under test at localhost, two sites, so the browser applies its
/// cookie rules (SameSite) to the way back and its Content-Security-Policy (<c>form-action</c>) to the way out.
/// SQLite only: the other tests cover the databases.
/// </summary>
[Collection(BrowserTestsCollection.Name)]
public sealed class ExternalSignInBrowserTests
{
    private const string AppRedirectUri = "https://federated.app.test/callback";

    [SkippableFact]
    public async Task A_person_signs_in_to_an_application_with_another_provider_another_connects_it_and_the_first_signs_out_at_both()
    {
        SystemChromium.SkipUnlessInstalled();
        var providerPort = ServerProcess.FreePort();
        var serverPort = ServerProcess.FreePort();
        var origin = $"http://localhost:{serverPort}";
        var person = Unique.Name("fed");
        var personPassword = Unique.Secret();
        var clientSecret = Unique.Secret();
        var appId = Unique.Name("fed-app");
        var connecting = Unique.Name("fed2");
        var local = Unique.Name("local");
        var localPassword = Unique.Secret();
        await using var provider = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["Seed:Users:90:user_name"] = person,
            ["Seed:Users:90:email"] = $"{person}@example.test",
            ["Seed:Users:90:password"] = personPassword,
            ["Seed:Users:90:email_verified"] = "true",
            ["Seed:Users:91:user_name"] = connecting,
            ["Seed:Users:91:email"] = $"{connecting}@example.test",
            ["Seed:Users:91:password"] = personPassword,
            ["Seed:Users:91:email_verified"] = "true",
            ["Seed:Clients:90:client_id"] = "federated-server",
            ["Seed:Clients:90:client_secret"] = clientSecret,
            ["Seed:Clients:90:token_endpoint_auth_method"] = "client_secret_post",
            ["Seed:Clients:90:grant_types:0"] = "authorization_code",
            ["Seed:Clients:90:redirect_uris:0"] = $"{origin}/signin-provider",
            ["Seed:Clients:90:post_logout_redirect_uris:0"] = $"{origin}/signin-provider/signed-out",
            ["Seed:Clients:90:scope"] = "openid profile email",
            ["Seed:Clients:90:consent_type"] = "implicit",
            ["Email:PickupDirectory"] = Path.Combine(Path.GetTempPath(), "idsrv-mail", Guid.NewGuid().ToString("N")),
        }, port: providerPort);
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ExternalProviders:provider:Authority"] = $"http://127.0.0.1:{providerPort}/",
            ["ExternalProviders:provider:ClientId"] = "federated-server",
            ["ExternalProviders:provider:ClientSecret"] = clientSecret,
            ["ExternalProviders:provider:DisplayName"] = "Provider",
            ["ExternalProviders:provider:CreateAccounts"] = "true",
            ["ExternalProviders:provider:SignOutAtProvider"] = "true",
            ["Seed:Users:90:user_name"] = local,
            ["Seed:Users:90:email"] = $"{local}@example.test",
            ["Seed:Users:90:password"] = localPassword,
            ["Seed:Users:90:email_verified"] = "true",
            ["Seed:Clients:90:client_id"] = appId,
            ["Seed:Clients:90:token_endpoint_auth_method"] = "none",
            ["Seed:Clients:90:grant_types:0"] = "authorization_code",
            ["Seed:Clients:90:redirect_uris:0"] = AppRedirectUri,
            ["Seed:Clients:90:scope"] = "openid profile email",
            ["Seed:Clients:90:consent_type"] = "implicit",
            ["Email:PickupDirectory"] = Path.Combine(Path.GetTempPath(), "idsrv-mail", Guid.NewGuid().ToString("N")),
        }, port: serverPort);

        using var playwright = await Playwright.CreateAsync();
        await using var chromium = await SystemChromium.LaunchAsync(playwright);
        var page = await (await chromium.NewContextAsync()).NewPageAsync();
        var consoleErrors = new List<string>();
        page.Console += (_, message) => { if (message.Type == "error") { consoleErrors.Add(message.Text); } };
        string Logs() => $"\nserver:\n{server.Output}\nprovider:\n{provider.Output}";

        // The provider answers its discovery document and keys once before anyone picks it: the server waits 5 s at most
        // on a provider's first answer, which a cold process on a busy CI machine can take longer to give (once seen in CI).
        using (var http = new HttpClient())
        {
            (await http.GetAsync($"http://127.0.0.1:{providerPort}/.well-known/openid-configuration")).EnsureSuccessStatusCode();
            (await http.GetAsync($"http://127.0.0.1:{providerPort}/.well-known/jwks")).EnsureSuccessStatusCode();
        }

        // The application asks for a sign-in; the person picks the provider and signs in there.
        var flow = new BrowserCodeFlow(origin, appId, AppRedirectUri, "openid profile email");
        await page.GotoAsync(flow.AuthorizeUrl);
        Assert.StartsWith($"{origin}/account/login", page.Url);
        await page.ClickAsync("#external-login button[value=provider]");
        try
        {
            await page.WaitForURLAsync($"http://127.0.0.1:{providerPort}/account/login**", new() { Timeout = 15_000 });
        }
        catch (TimeoutException)
        {
            Assert.Fail($"Not at the provider; at {page.Url}:\n{await page.InnerTextAsync("body")}{Logs()}");
        }

        await page.FillAsync("#Input_UserName", person);
        await page.FillAsync("#Input_Password", personPassword);
        var code = await flow.CodeAfterAsync(page, () => page.ClickAsync("#login-form button[type=submit]"), Logs);
        var idToken = await flow.RedeemForIdentityTokenAsync(code);
        Assert.Equal(person, idToken.GetProperty("preferred_username").GetString());
        Assert.Equal($"{person}@example.test", idToken.GetProperty("email").GetString());
        Assert.Equal(["fed"], Jwt.Strings(idToken.GetProperty("amr")));

        // Someone with a password here connects their provider account on My account: that page's form goes out to the
        // provider (its form-action allows it), and the answer comes back to the page.
        var other = await (await chromium.NewContextAsync()).NewPageAsync();
        other.Console += (_, message) => { if (message.Type == "error") { consoleErrors.Add(message.Text); } };
        await other.GotoAsync($"{origin}/account/login");
        await other.FillAsync("#Input_UserName", local);
        await other.FillAsync("#Input_Password", localPassword);
        await other.ClickAsync("#login-form button[type=submit]");
        await other.WaitForURLAsync($"{origin}/", new() { Timeout = 15_000 });
        await other.GotoAsync($"{origin}/account/sign-in-providers");
        await other.ClickAsync("#connect-provider button[value=provider]");
        await other.WaitForURLAsync($"http://127.0.0.1:{providerPort}/account/login**", new() { Timeout = 15_000 });
        await other.FillAsync("#Input_UserName", connecting);
        await other.FillAsync("#Input_Password", personPassword);
        await other.ClickAsync("#login-form button[type=submit]");
        try
        {
            await other.WaitForSelectorAsync("text=Provider is connected", new() { Timeout = 15_000 });
        }
        catch (TimeoutException)
        {
            Assert.Fail($"Not connected; at {other.Url}:\n{await other.InnerTextAsync("main")}{Logs()}");
        }

        Assert.Contains("Provider", await other.InnerTextAsync("ul.sign-in-providers"));

        // The first person signs out here, which signs them out at the provider too (SignOutAtProvider): the sign-out
        // form's answer goes on to the provider by script, as its form-action keeps forms to this server.
        await page.GotoAsync($"{origin}/account/logout");
        await page.ClickAsync("main form button[type=submit]");
        try
        {
            await page.WaitForURLAsync($"{origin}/account/signed-out", new() { Timeout = 15_000 });
        }
        catch (TimeoutException)
        {
            Assert.Fail($"Not back from the provider's sign-out; at {page.Url}:\n{await page.InnerTextAsync("body")}{Logs()}");
        }

        await page.GotoAsync($"http://127.0.0.1:{providerPort}/account");
        Assert.StartsWith($"http://127.0.0.1:{providerPort}/account/login", page.Url);
        Assert.DoesNotContain(consoleErrors, e => e.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase));
    }
}
