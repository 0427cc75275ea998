using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using IdentityServer.Logout;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Logout;

/// <summary>
/// OpenID Connect Front-Channel Logout 1.0: when the user signs out here in a browser, the page loads, in hidden frames,
/// the front-channel logout URI of each client the session signed in to, with <c>iss</c> and <c>sid</c>; an RP-initiated
/// logout shows that page before it goes on to the client's post-logout redirect URI.
/// </summary>
public abstract class FrontChannelLogoutTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task The_sign_out_page_loads_the_front_channel_logout_uri_of_each_client_the_session_signed_in_to()
    {
        var first = await ClientAsync(frontChannel: "https://app.test/front-first?tenant=1");
        var second = await ClientAsync(frontChannel: "https://app.test/front-second");
        var backOnly = await ClientAsync(frontChannel: null, backChannel: "https://app.test/back");
        await ClientAsync(frontChannel: "https://app.test/never-signed-in");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var firstTokens = await SignInAsync(browser, first, user);
        await SignInAsync(browser, second, user);
        await SignInAsync(browser, backOnly, user);
        var sid = Jwt.Payload(firstTokens.GetProperty("id_token").GetString()!).GetProperty("sid").GetString()!;
        var issuer = await server.EndpointAsync("issuer");

        var signedOut = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        Assert.Contains("You are signed out", signedOut.Body);
        var frames = signedOut.Document.QuerySelectorAll("iframe[hidden]").Select(f => f.GetAttribute("src")!).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(new[]
        {
            QueryHelpers.AddQueryString("https://app.test/front-first?tenant=1", new Dictionary<string, string?> { ["iss"] = issuer, ["sid"] = sid }),
            QueryHelpers.AddQueryString("https://app.test/front-second", new Dictionary<string, string?> { ["iss"] = issuer, ["sid"] = sid }),
        }.Order(StringComparer.Ordinal), frames);
        Assert.Contains("frame-src https://app.test", ContentSecurityPolicy(signedOut.Response));

        // The clients with a front-channel URI only have no logout token to send: their rows are not made due.
        var rows = await RowsAsync(sid);
        Assert.Equal(new[] { first.ClientId, second.ClientId }.Order(StringComparer.Ordinal),
            rows.Where(r => r.FrontChannelOnly && r.NotifyAt is null).Select(r => r.ClientId).Order(StringComparer.Ordinal));
    }

    /// <summary>"Sign out everywhere" ends this browser's session too: its applications are told on the signed-out page it leads to.</summary>
    [SkippableFact]
    public async Task Signing_out_everywhere_loads_this_browsers_frames_on_the_signed_out_page()
    {
        var client = await ClientAsync(frontChannel: "https://app.test/front-channel");
        var browser = server.CreateBrowser();
        await SignInAsync(browser, client, await server.CreateUserAsync());

        var signedOut = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sessions"), selector: "#sign-out-everywhere");

        Assert.Contains("You are signed out", signedOut.Body);
        Assert.StartsWith("https://app.test/front-channel?", Assert.Single(signedOut.Document.QuerySelectorAll("iframe[hidden]")).GetAttribute("src"));
        Assert.Contains("frame-src https://app.test", ContentSecurityPolicy(signedOut.Response));
    }

    [SkippableFact]
    public async Task Without_front_channel_clients_the_sign_out_page_frames_nothing()
    {
        var client = await ClientAsync(frontChannel: null, backChannel: "https://app.test/back");
        var browser = server.CreateBrowser();
        await SignInAsync(browser, client, await server.CreateUserAsync());

        var signedOut = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        Assert.Empty(signedOut.Document.QuerySelectorAll("iframe"));
        Assert.DoesNotContain("frame-src", ContentSecurityPolicy(signedOut.Response));
    }

    /// <summary>
    /// RP-initiated logout: instead of redirecting at once, the server answers a page that loads the frames and then
    /// goes on to the client's post-logout redirect URI (with its state), by a script the policy allows by its hash.
    /// </summary>
    [SkippableFact]
    public async Task Rp_initiated_logout_loads_the_frames_then_continues_to_the_post_logout_redirect_uri()
    {
        var client = await ClientAsync(frontChannel: "https://app.test/front-channel");
        var browser = server.CreateBrowser();
        var tokens = await SignInAsync(browser, client, await server.CreateUserAsync());
        var sid = Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sid").GetString()!;

        var page = await browser.NavigateAsync(QueryHelpers.AddQueryString(await server.EndpointAsync("end_session_endpoint"), new Dictionary<string, string?>
        {
            ["id_token_hint"] = tokens.GetProperty("id_token").GetString(), ["post_logout_redirect_uri"] = "https://app.test/signed-out", ["state"] = "s1",
        }), OAuth.IsApp);

        Assert.Equal(HttpStatusCode.OK, page.Status);
        var frame = Assert.Single(page.Document.QuerySelectorAll("iframe[hidden]")).GetAttribute("src")!;
        Assert.Equal(sid, QueryHelpers.ParseQuery(new Uri(frame).Query)["sid"].ToString());
        var next = new Uri(page.Document.QuerySelector("a#continue")!.GetAttribute("href")!);
        Assert.Equal("https://app.test/signed-out", next.GetLeftPart(UriPartial.Path));
        Assert.Equal("s1", QueryHelpers.ParseQuery(next.Query)["state"].ToString());
        var policy = ContentSecurityPolicy(page.Response);
        Assert.Contains("frame-src https://app.test", policy);
        var script = page.Document.QuerySelector("script")!.TextContent;
        Assert.Contains($"'sha256-{Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(script)))}'", policy);

        // The session has ended: the account pages ask to sign in again.
        var account = await browser.NavigateAsync(new Uri(server.CreateClient().BaseAddress!, "/account").ToString());
        Assert.Contains("/account/login", account.RedirectTarget?.AbsolutePath ?? account.Uri.AbsolutePath);
    }

    /// <summary>A logout confirmed on this server's page (no valid hint) loads the frames too, then shows the signed-out page.</summary>
    [SkippableFact]
    public async Task A_confirmed_logout_without_a_hint_loads_the_frames_then_continues_to_the_signed_out_page()
    {
        var client = await ClientAsync(frontChannel: "https://app.test/front-channel");
        var browser = server.CreateBrowser();
        await SignInAsync(browser, client, await server.CreateUserAsync());
        var confirmation = await browser.NavigateAsync(await server.EndpointAsync("end_session_endpoint"));

        var page = await browser.SubmitAsync(confirmation, button: "button[name=confirm_sign_out]");

        Assert.Equal(HttpStatusCode.OK, page.Status);
        Assert.Single(page.Document.QuerySelectorAll("iframe[hidden]"));
        Assert.Equal("/account/signed-out", page.Document.QuerySelector("a#continue")!.GetAttribute("href"));
    }

    [SkippableFact]
    public async Task Discovery_advertises_front_channel_logout_with_sessions()
    {
        var discovery = await server.CreateClient().GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");

        Assert.True(discovery.GetProperty("frontchannel_logout_supported").GetBoolean());
        Assert.True(discovery.GetProperty("frontchannel_logout_session_supported").GetBoolean());
    }

    [SkippableTheory]
    [InlineData("https://elsewhere.example.com/logout", "frontchannel_logout_uri")] // not the origin of a redirect URI
    [InlineData("https://rp.example.com:8443/logout", "frontchannel_logout_uri")] // another port
    [InlineData("http://rp.example.com/logout", "frontchannel_logout_uri")]
    [InlineData("https://rp.example.com/logout#fragment", "frontchannel_logout_uri")]
    [InlineData("https://user:secret@rp.example.com/logout", "frontchannel_logout_uri")]
    [InlineData("not a uri", "frontchannel_logout_uri")]
    [InlineData("https://rp.example.com/logout?sid=mine", "frontchannel_logout_uri")] // this server adds iss and sid
    [InlineData(null, "frontchannel_logout_session_required")]
    public async Task The_admin_API_refuses_an_unusable_front_channel_logout_registration(string? uri, string field)
    {
        var admin = await AdminAsync(server);
        var document = new Dictionary<string, object?>
        {
            ["client_id"] = Unique.Name("rp"), ["token_endpoint_auth_method"] = "none", ["grant_types"] = new[] { "authorization_code" },
            ["redirect_uris"] = new[] { "https://rp.example.com/callback" }, ["scope"] = "openid",
            ["frontchannel_logout_uri"] = uri, ["frontchannel_logout_session_required"] = true,
        };

        await (await admin.PostJsonAsync(ClientsUrl, Json(document))).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", field);
    }

    /// <summary>Plain http, on loopback only, is for a confidential client (OpenID Connect Front-Channel Logout 1.0 section 2).</summary>
    [SkippableTheory]
    [InlineData("none", HttpStatusCode.BadRequest)]
    [InlineData("client_secret_basic", HttpStatusCode.Created)]
    public async Task A_loopback_http_front_channel_logout_uri_is_for_a_confidential_client_only(string authMethod, HttpStatusCode expected)
    {
        var admin = await AdminAsync(server);

        var response = await admin.PostJsonAsync(ClientsUrl, Json(new Dictionary<string, object?>
        {
            ["client_id"] = Unique.Name("rp"), ["token_endpoint_auth_method"] = authMethod, ["grant_types"] = new[] { "authorization_code" },
            ["redirect_uris"] = new[] { "http://127.0.0.1:5000/callback" }, ["scope"] = "openid",
            ["frontchannel_logout_uri"] = "http://127.0.0.1:5000/signout",
        }));

        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    [SkippableFact]
    public async Task A_front_channel_logout_registration_round_trips_through_the_admin_API()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("rp");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new Dictionary<string, object?>
        {
            ["client_id"] = clientId, ["token_endpoint_auth_method"] = "none", ["grant_types"] = new[] { "authorization_code" },
            ["redirect_uris"] = new[] { "https://rp.example.com/callback" }, ["scope"] = "openid",
            ["frontchannel_logout_uri"] = "https://rp.example.com/front-channel?tenant=1", ["frontchannel_logout_session_required"] = true,
        }))).ExpectAsync(HttpStatusCode.Created);

        var read = await admin.GetJsonAsync(Path(ClientsUrl, clientId));

        Assert.Equal("https://rp.example.com/front-channel?tenant=1", read.GetProperty("frontchannel_logout_uri").GetString());
        Assert.True(read.GetProperty("frontchannel_logout_session_required").GetBoolean());
    }

    /// <summary>A web app with a server on https://app.test, with the logout URIs given.</summary>
    private Task<TestClient> ClientAsync(string? frontChannel, string? backChannel = null) => server.CreateClientAsync(c =>
    {
        c.ClientSecret = Unique.Secret();
        c.TokenEndpointAuthMethod = "client_secret_basic";
        c.GrantTypes = ["authorization_code"];
        c.RedirectUris = [OAuth.AppRedirectUri];
        c.PostLogoutRedirectUris = ["https://app.test/signed-out"];
        c.Scope = "openid";
        c.ConsentType = "implicit";
        c.FrontChannelLogoutUri = frontChannel;
        c.BackChannelLogoutUri = backChannel;
    });

    private async Task<JsonElement> SignInAsync(Browser browser, TestClient client, TestUser user)
    {
        var pkce = Pkce.Create();
        var answer = await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce), user);
        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["code"] = answer["code"], ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = pkce.Verifier,
        }, client);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }

    private async Task<List<UserSessionClient>> RowsAsync(string sessionId)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Set<UserSessionClient>().AsNoTracking()
            .Where(c => c.SessionId == sessionId).ToListAsync();
    }

    private static string ContentSecurityPolicy(HttpResponseMessage response) =>
        response.Headers.TryGetValues("Content-Security-Policy", out var values) ? string.Join(";", values) : "";
}

public sealed class SqliteFrontChannelLogoutTests(SqliteServerFixture server)
    : FrontChannelLogoutTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlFrontChannelLogoutTests(PostgreSqlServerFixture server)
    : FrontChannelLogoutTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
