using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Playwright;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A real single-page app: oidc-client-ts (the library the README shows, from the npm registry) in Debian's Chromium,
/// driven by Playwright, against the server as a process on a loopback port. The app is served from another port of
/// localhost (a real listener: Chromium lets only a page of the loopback address space call one), which is a secure
/// context, so WebCrypto makes the app's DPoP key.
/// SQLite only: what the database does here the other tests cover on PostgreSQL.
/// </summary>
[Collection(BrowserTestsCollection.Name)]
public sealed class SpaBrowserTests
{

    /// <summary>Pinned, so a new release cannot change what the test shows without a change here.</summary>
    private const string OidcClientTsVersion = "3.5.0";

    /// <param name="requireNonce">
    /// With <c>Dpop:RequireNonce</c>, the library's first proof at each step is answered <c>use_dpop_nonce</c>, and it
    /// tries again with the nonce (code redemption and refresh by itself; the app's userinfo call as an app calls an API).
    /// </param>
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_oidc_client_ts_app_signs_in_with_DPoP_refreshes_and_calls_userinfo_with_bound_tokens(bool requireNonce)
    {
        SystemChromium.SkipUnlessInstalled();
        var library = await InstallOidcClientTsAsync();

        var userName = Unique.Name("spa");
        var password = Unique.Secret();
        var clientId = Unique.Name("spa-client");
        using var appHost = new HttpListener();
        var app = $"http://localhost:{ServerProcess.FreePort()}";
        appHost.Prefixes.Add($"{app}/");
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["Seed:Users:90:user_name"] = userName,
            ["Seed:Users:90:email"] = $"{userName}@example.test",
            ["Seed:Users:90:password"] = password,
            ["Seed:Users:90:email_verified"] = "true",
            ["Seed:Clients:90:client_id"] = clientId,
            ["Seed:Clients:90:token_endpoint_auth_method"] = "none",
            ["Seed:Clients:90:grant_types:0"] = "authorization_code",
            ["Seed:Clients:90:grant_types:1"] = "refresh_token",
            ["Seed:Clients:90:redirect_uris:0"] = $"{app}/callback.html",
            ["Seed:Clients:90:scope"] = "openid profile offline_access",
            ["Seed:Clients:90:consent_type"] = "implicit",
            ["Seed:Clients:90:dpop_bound_access_tokens"] = "true",
            ["Email:PickupDirectory"] = Path.Combine(Path.GetTempPath(), "idsrv-mail", Guid.NewGuid().ToString("N")),
            ["Dpop:RequireNonce"] = requireNonce ? "true" : "false",
        });
        var authority = $"http://localhost:{server.Port}/";

        using var playwright = await Playwright.CreateAsync();
        await using var chromium = await SystemChromium.LaunchAsync(playwright);
        var context = await chromium.NewContextAsync();
        var settings = JsonSerializer.Serialize(new
        {
            authority, client_id = clientId, redirect_uri = $"{app}/callback.html", scope = "openid profile offline_access", response_type = "code",
        });
        appHost.Start();
        var serving = ServeAppAsync(appHost, library, settings);
        var page = await context.NewPageAsync();
        var console = new List<string>();
        page.Console += (_, message) => console.Add($"{message.Type}: {message.Text}");

        // The app sends the browser to sign in; the user signs in; the server sends it back to the app's callback.
        await page.GotoAsync($"{app}/");
        await Expect(() => page.WaitForURLAsync($"{authority}account/login**", new() { Timeout = 15_000 }), "No login page");
        await page.FillAsync("#Input_UserName", userName);
        await page.FillAsync("#Input_Password", password);
        await page.ClickAsync("#login-form button[type=submit]");
        await Expect(() => page.WaitForFunctionAsync("() => window.outcome !== undefined", null, new() { Timeout = 20_000 }), "The app never finished");

        var outcome = JsonDocument.Parse(await page.EvaluateAsync<string>("() => JSON.stringify(window.outcome)")).RootElement;
        appHost.Stop();
        await serving;
        Assert.True(outcome.TryGetProperty("signedIn", out var signedIn), outcome.ToString());
        Assert.Equal("DPoP", signedIn.GetProperty("token_type").GetString());
        var jkt = Jwt.Payload(signedIn.GetProperty("access_token").GetString()!).GetProperty("cnf").GetProperty("jkt").GetString();
        Assert.False(string.IsNullOrEmpty(jkt));

        var refreshed = outcome.GetProperty("refreshed");
        Assert.Equal("DPoP", refreshed.GetProperty("token_type").GetString());
        Assert.NotEqual(signedIn.GetProperty("access_token").GetString(), refreshed.GetProperty("access_token").GetString());
        Assert.Equal(jkt, Jwt.Payload(refreshed.GetProperty("access_token").GetString()!).GetProperty("cnf").GetProperty("jkt").GetString());

        var userInfo = outcome.GetProperty("userInfo");
        Assert.True(userInfo.GetProperty("status").GetInt32() == 200, userInfo.ToString());
        Assert.Equal(requireNonce, userInfo.GetProperty("askedForNonce").GetBoolean());
        Assert.Equal(userName, userInfo.GetProperty("body").GetProperty("preferred_username").GetString());

        async Task Expect(Func<Task> wait, string failure)
        {
            try
            {
                await wait();
            }
            catch (TimeoutException)
            {
                Assert.Fail($"{failure}; at {page.Url}:\n{await page.ContentAsync()}\nconsole:\n{string.Join('\n', console)}\n{server.Output}");
            }
        }
    }

    /// <summary>The app's files: the library, the callback page, and a start page that sends the browser to sign in.</summary>
    private static async Task ServeAppAsync(HttpListener listener, string library, string settings)
    {
        while (listener.IsListening)
        {
            HttpListenerContext request;
            try
            {
                request = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return; // stopped
            }

            var path = request.Request.Url!.AbsolutePath;
            var (type, body) = path == "/oidc-client-ts.js" ? ("text/javascript", await File.ReadAllBytesAsync(library))
                : path == "/callback.html" ? ("text/html", Encoding.UTF8.GetBytes(Page(settings, Callback)))
                : ("text/html", Encoding.UTF8.GetBytes(Page(settings, "userManager.signinRedirect();")));
            request.Response.ContentType = type;
            await request.Response.OutputStream.WriteAsync(body);
            request.Response.Close();
        }
    }

    /// <summary>
    /// The callback page: completes the sign-in (the code redeemed with a proof of the key the code was bound to),
    /// refreshes with the refresh token (a proof of the same key), and calls userinfo with the DPoP scheme and a proof
    /// it makes with the library's <c>dpopProof</c>, as an app calls any API: again with the nonce if it is asked for one
    /// (401 with a <c>DPoP-Nonce</c> header). What happened is left in <c>window.outcome</c>.
    /// </summary>
    private const string Callback = """
        (async () => {
          try {
            const signedIn = await userManager.signinCallback();
            const refreshed = await userManager.signinSilent();
            const userInfoUrl = settings.authority + "connect/userinfo";
            const callUserInfo = async (nonce) => fetch(userInfoUrl, {
              headers: { Authorization: "DPoP " + refreshed.access_token, DPoP: await userManager.dpopProof(userInfoUrl, refreshed, "GET", nonce) },
            });
            let response = await callUserInfo();
            const nonce = response.status === 401 ? response.headers.get("DPoP-Nonce") : null;
            if (nonce) {
              response = await callUserInfo(nonce);
            }
            window.outcome = {
              signedIn: { token_type: signedIn.token_type, access_token: signedIn.access_token },
              refreshed: { token_type: refreshed.token_type, access_token: refreshed.access_token },
              userInfo: { status: response.status, askedForNonce: nonce !== null, body: await response.json().catch(() => null) },
            };
          } catch (error) {
            window.outcome = { error: String(error && error.stack || error) };
          }
        })();
        """;

    private static string Page(string settings, string script) => $$"""
        <!doctype html>
        <html><head><meta charset="utf-8"><script src="/oidc-client-ts.js"></script></head>
        <body><script>
          const settings = {{settings}};
          const userManager = new oidc.UserManager({ ...settings, dpop: { store: new oidc.IndexedDbDPoPStore(), bind_authorization_code: true } });
          {{script}}
        </script></body></html>
        """;

    /// <summary>
    /// oidc-client-ts's browser bundle, installed once per machine with npm (from the npm registry) into the temporary
    /// folder; skipped where npm is not installed.
    /// </summary>
    private static async Task<string> InstallOidcClientTsAsync()
    {
        var folder = Path.Combine(Path.GetTempPath(), "idsrv-npm", $"oidc-client-ts-{OidcClientTsVersion}");
        var bundle = Path.Combine(folder, "node_modules", "oidc-client-ts", "dist", "browser", "oidc-client-ts.js");
        if (File.Exists(bundle))
        {
            return bundle;
        }

        Directory.CreateDirectory(folder);
        ProcessStartInfo start;
        try
        {
            start = new ProcessStartInfo("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--prefix", folder, $"oidc-client-ts@{OidcClientTsVersion}"])
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
            };
            using var npm = Process.Start(start)!;
            var output = npm.StandardOutput.ReadToEndAsync();
            var errors = npm.StandardError.ReadToEndAsync();
            await npm.WaitForExitAsync();
            Assert.True(npm.ExitCode == 0 && File.Exists(bundle), $"npm could not install oidc-client-ts {OidcClientTsVersion}:\n{await output}\n{await errors}");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Skip.If(true, "npm is not installed: install Node.js and npm to run the single-page app test.");
        }

        return bundle;
    }
}
