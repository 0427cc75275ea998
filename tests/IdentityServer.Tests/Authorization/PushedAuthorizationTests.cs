using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// Pushed authorization requests (RFC 9126): a public client pushes its request, then sends the browser to the
/// authorization endpoint with only client_id and request_uri; the pushed request survives the detour through the
/// login and consent pages.
/// </summary>
public abstract class PushedAuthorizationTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_public_client_pushes_its_request_and_completes_the_flow_through_login_and_consent()
    {
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var pkce = Pkce.Create();
        var (state, nonce) = (Unique.Name("state"), Unique.Name("nonce"));
        var requestUri = await OAuth.PushAsync(server, client.ClientId, Request(pkce, "openid profile offline_access", state, nonce));
        Assert.StartsWith("urn:ietf:params:oauth:request_uri:", requestUri);

        var login = await browser.NavigateAsync(await AuthorizeUrlAsync(client, requestUri), OAuth.IsApp);
        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        var consent = await OAuth.SignInAsync(browser, login, user);
        Assert.True(consent.RedirectTarget is null && consent.Status == HttpStatusCode.OK, $"{(int)consent.Status} at {consent.Uri} -> {consent.RedirectTarget}");
        var callback = await browser.SubmitAsync(consent, button: "button[value=accept]", stopAt: OAuth.IsApp);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget), $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
        var result = OAuth.QueryOf(callback.RedirectTarget!);
        Assert.Equal(state, result["state"]);
        var tokens = await OAuth.RedeemAsync(server, client, result["code"], pkce);
        var id = Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
        Assert.Equal(nonce, id.GetProperty("nonce").GetString());
        Assert.Equal(user.Id, id.GetProperty("sub").GetString());
        Assert.True(tokens.TryGetProperty("refresh_token", out _));
    }

    [SkippableFact]
    public async Task A_pushed_request_cannot_be_used_twice()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var requestUri = await OAuth.PushAsync(server, client.ClientId, Request(Pkce.Create(), "openid", Unique.Name("state"), Unique.Name("nonce")));
        await OAuth.AuthorizeAsync(browser, await AuthorizeUrlAsync(client, requestUri), user);

        var again = await browser.NavigateAsync(await AuthorizeUrlAsync(client, requestUri), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(again.RedirectTarget is null || !OAuth.QueryOf(again.RedirectTarget).ContainsKey("code"), $"A second code was issued: {again.RedirectTarget}");
        Assert.True((int)again.Status < 500, again.Body);
    }

    /// <summary>
    /// A request_uri that was used already, or never pushed, is invalid_request_uri (RFC 9101 6.2, OpenID Connect Core
    /// 3.1.2.6): back to the client at a registered redirect_uri sent beside it, with its state and the issuer, else on
    /// the error page. It was invalid_token, which the authorization endpoint does not have.
    /// </summary>
    [SkippableFact]
    public async Task A_used_or_unknown_request_uri_is_invalid_request_uri()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var requestUri = await OAuth.PushAsync(server, client.ClientId, Request(Pkce.Create(), "openid", Unique.Name("state"), Unique.Name("nonce")));
        await OAuth.AuthorizeAsync(browser, await AuthorizeUrlAsync(client, requestUri), user);
        var state = Unique.Name("state");

        var used = await browser.NavigateAsync(QueryHelpers.AddQueryString(await AuthorizeUrlAsync(client, requestUri),
            new Dictionary<string, string?> { ["redirect_uri"] = OAuth.AppRedirectUri, ["state"] = state }), OAuth.IsApp);
        var unknown = await server.CreateBrowser().NavigateAsync(await AuthorizeUrlAsync(client, "urn:ietf:params:oauth:request_uri:never-pushed"), OAuth.IsApp);

        Assert.True(used.RedirectTarget is not null && OAuth.IsApp(used.RedirectTarget), $"{(int)used.Status} at {used.Uri}:\n{used.Body}");
        var answer = OAuth.QueryOf(used.RedirectTarget!);
        Assert.Equal("invalid_request_uri", answer["error"]);
        Assert.Equal(state, answer["state"]);
        Assert.Equal(await server.EndpointAsync("issuer"), answer["iss"]);
        Assert.Equal(HttpStatusCode.BadRequest, unknown.Status);
        Assert.Contains("invalid_request_uri", unknown.Body);
        Assert.DoesNotContain("invalid_token", unknown.Body);
    }

    /// <summary>A pushed request's login_hint is not in the URL the browser brings, yet fills in the login page all the same, and stays out of the URL.</summary>
    [SkippableFact]
    public async Task A_login_hint_in_a_pushed_request_fills_in_the_user_name_on_the_login_page()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var pkce = Pkce.Create();
        var parameters = Request(pkce, "openid", Unique.Name("state"), Unique.Name("nonce"));
        parameters["login_hint"] = user.UserName;
        var requestUri = await OAuth.PushAsync(server, client.ClientId, parameters);

        var login = await browser.NavigateAsync(await AuthorizeUrlAsync(client, requestUri), OAuth.IsApp);

        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        Assert.Equal(user.UserName, login.Document.QuerySelector("#Input_UserName")!.GetAttribute("value"));
        // The application pushed it to keep it off the browser: it is not in the address bar either.
        Assert.DoesNotContain(user.UserName, Uri.UnescapeDataString(Uri.UnescapeDataString(login.Uri.AbsoluteUri)));
        var callback = await OAuth.SignInAsync(browser, login, user);
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce);
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    [SkippableFact]
    public async Task Prompt_login_in_a_pushed_request_shows_the_login_page_once_and_then_completes()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var pkce = Pkce.Create();
        var state = Unique.Name("state");
        var parameters = Request(pkce, "openid", state, Unique.Name("nonce"));
        parameters["prompt"] = "login";
        var requestUri = await OAuth.PushAsync(server, client.ClientId, parameters);

        var login = await browser.NavigateAsync(await AuthorizeUrlAsync(client, requestUri), OAuth.IsApp);
        Assert.True(login.RedirectTarget is null && login.Uri.AbsolutePath == "/account/login", $"{(int)login.Status} at {login.Uri} -> {login.RedirectTarget}");

        var callback = await OAuth.SignInAsync(browser, login, user);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget),
            $"Expected a code after signing in, got {(int)callback.Status} at {callback.Uri}");
        var result = OAuth.QueryOf(callback.RedirectTarget!);
        Assert.Equal(state, result["state"]);
        await OAuth.RedeemAsync(server, client, result["code"], pkce);
    }

    /// <summary>The account-choice form posts the pushed request's request_uri back, which is used once only when the code is issued.</summary>
    [SkippableFact]
    public async Task Prompt_select_account_in_a_pushed_request_asks_once_and_then_completes()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var pkce = Pkce.Create();
        var state = Unique.Name("state");
        var parameters = Request(pkce, "openid", state, Unique.Name("nonce"));
        parameters["prompt"] = "select_account";
        var requestUri = await OAuth.PushAsync(server, client.ClientId, parameters);

        var chooser = await browser.NavigateAsync(await AuthorizeUrlAsync(client, requestUri), OAuth.IsApp);
        Assert.True(chooser.RedirectTarget is null && chooser.Document.QuerySelector("button[value=continue]") is not null,
            $"{(int)chooser.Status} at {chooser.Uri} -> {chooser.RedirectTarget}");
        var callback = await browser.SubmitAsync(chooser, button: "button[value=continue]", stopAt: OAuth.IsApp);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget), $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
        var result = OAuth.QueryOf(callback.RedirectTarget!);
        Assert.Equal(state, result["state"]);
        await OAuth.RedeemAsync(server, client, result["code"], pkce);
    }

    /// <summary>
    /// A client registered with require_pushed_authorization_requests (RFC 9126 section 6): a request in the address bar
    /// is refused (back to the client, its redirect URI being registered), a pushed one goes through.
    /// </summary>
    [SkippableFact]
    public async Task A_client_that_must_push_is_refused_a_request_in_the_address_bar_and_served_a_pushed_one()
    {
        var client = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
            c.ConsentType = "implicit";
            c.RequirePushedAuthorizationRequests = true;
        });
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();

        var refused = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp);
        Assert.True(refused.RedirectTarget is not null && OAuth.IsApp(refused.RedirectTarget), $"{(int)refused.Status} at {refused.Uri}:\n{refused.Body}");
        Assert.Equal("invalid_request", OAuth.QueryOf(refused.RedirectTarget!)["error"]);

        var pkce = Pkce.Create();
        var requestUri = await OAuth.PushAsync(server, client.ClientId, Request(pkce, "openid", Unique.Name("state"), Unique.Name("nonce")));
        var result = await OAuth.AuthorizeAsync(browser, await AuthorizeUrlAsync(client, requestUri), user);
        await OAuth.RedeemAsync(server, client, result["code"], pkce);
    }

    [SkippableFact]
    public async Task A_pushed_request_with_an_unregistered_redirect_uri_is_refused_at_the_push()
    {
        var client = await server.CreatePublicClientAsync();
        var parameters = Request(Pkce.Create(), "openid", Unique.Name("state"), Unique.Name("nonce"));
        parameters["redirect_uri"] = "https://evil.test/callback";
        parameters["client_id"] = client.ClientId;

        var response = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint", parameters);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    /// <summary>
    /// A request goes through the login page in its URL, escaped once more: a POST with a long claims (about 6 KB) was
    /// sent to a login URL past the 8 KB request line Kestrel takes, which the browser got as a bare 414. It goes back to
    /// the client as invalid_request naming pushed requests, and pushed, the same request completes through the login
    /// page. A smaller one (about 2 KB) still goes to the login page by value.
    /// </summary>
    [SkippableFact]
    public async Task A_request_too_large_for_the_sign_in_pages_goes_back_to_the_client_and_pushed_it_completes()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var state = Unique.Name("state");
        var parameters = Request(pkce, "openid", state, Unique.Name("nonce"));
        parameters["claims"] = Claims(420);
        var endpoint = await server.EndpointAsync("authorization_endpoint");

        var posted = await server.CreateBrowser().PostFormAsync(endpoint, parameters.Append(KeyValuePair.Create("client_id", client.ClientId)), OAuth.IsApp);

        Assert.True(posted.RedirectTarget is not null && OAuth.IsApp(posted.RedirectTarget),
            $"{(int)posted.Status} at a URL of {posted.Uri.OriginalString.Length} characters");
        var error = OAuth.QueryOf(posted.RedirectTarget!);
        Assert.Equal("invalid_request", error["error"]);
        Assert.Equal(state, error["state"]);
        Assert.Contains("request_uri", error["error_description"]);

        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await AuthorizeUrlAsync(client, await OAuth.PushAsync(server, client.ClientId, parameters)), user);
        Assert.Equal(state, result["state"]);
        await OAuth.RedeemAsync(server, client, result["code"], pkce);

        parameters["claims"] = Claims(150);
        var smaller = await server.CreateBrowser().PostFormAsync(endpoint, parameters.Append(KeyValuePair.Create("client_id", client.ClientId)), OAuth.IsApp);
        Assert.Equal("/account/login", smaller.Uri.AbsolutePath);
        Assert.True(smaller.Uri.PathAndQuery.Length < 8192 - 32);

        static string Claims(int count) => System.Text.Json.JsonSerializer.Serialize(
            new { userinfo = Enumerable.Range(0, count).ToDictionary(i => $"c{i:D4}", _ => (object?)null) });
    }

    private static Dictionary<string, string> Request(Pkce pkce, string scope, string state, string nonce) => new()
    {
        ["response_type"] = "code",
        ["redirect_uri"] = OAuth.AppRedirectUri,
        ["scope"] = scope,
        ["state"] = state,
        ["nonce"] = nonce,
        ["code_challenge"] = pkce.Challenge,
        ["code_challenge_method"] = "S256",
    };

    private async Task<string> AuthorizeUrlAsync(TestClient client, string requestUri) =>
        QueryHelpers.AddQueryString(await server.EndpointAsync("authorization_endpoint"),
            new Dictionary<string, string?> { ["client_id"] = client.ClientId, ["request_uri"] = requestUri });
}

public sealed class SqlitePushedAuthorizationTests(SqliteServerFixture server)
    : PushedAuthorizationTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlPushedAuthorizationTests(PostgreSqlServerFixture server) : PushedAuthorizationTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
