using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Authorization;

/// <summary><c>prompt=none</c>, <c>prompt=login</c> and <c>max_age</c> as OpenID Connect Core (3.1.2.1) says.</summary>
public abstract class PromptTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task Prompt_none_without_a_session_redirects_back_with_login_required()
    {
        var client = await server.CreatePublicClientAsync();
        var state = Unique.Name("state");

        var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "none", ["state"] = state }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.Equal("login_required", result["error"]);
        Assert.Equal(state, result["state"]);
        Assert.False(result.ContainsKey("code"));
    }

    /// <summary>
    /// id_token_hint names the user the client expects: the signed-in user gets a code only if it is theirs. Another
    /// user's hint (or one that is not our identity token) gets login_required with prompt=none, and otherwise the
    /// login page, where the hinted user can sign in.
    /// </summary>
    [SkippableFact]
    public async Task An_id_token_hint_for_another_user_is_not_answered_with_the_signed_in_users_code()
    {
        var client = await server.CreatePublicClientAsync();
        var signedIn = await server.CreateUserAsync();
        var other = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var own = (await OAuth.SignInAndRedeemAsync(server, browser, client, signedIn, "openid")).GetProperty("id_token").GetString()!;
        var others = (await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, other, "openid")).GetProperty("id_token").GetString()!;

        async Task<BrowserPage> AuthorizeAsync(string hint, string? prompt) =>
            await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
                extra: new Dictionary<string, string?> { ["prompt"] = prompt, ["id_token_hint"] = hint }), OAuth.IsApp);

        var mismatched = await AuthorizeAsync(others, "none");
        var garbage = await AuthorizeAsync("not-a-token", "none");
        var matching = await AuthorizeAsync(own, "none");
        var interactive = await AuthorizeAsync(others, null);

        Assert.Equal("login_required", OAuth.QueryOf(mismatched.RedirectTarget!)["error"]);
        Assert.Equal("login_required", OAuth.QueryOf(garbage.RedirectTarget!)["error"]);
        Assert.True(OAuth.QueryOf(matching.RedirectTarget!).ContainsKey("code"), matching.RedirectTarget!.ToString());
        Assert.Null(interactive.RedirectTarget);
        Assert.Equal("/account/login", interactive.Uri.AbsolutePath);
        // The hinted user signs in, and the client gets their code; the signed-in user again would get login_required.
        var callback = await OAuth.SignInAsync(browser, interactive, other);
        Assert.True(OAuth.QueryOf(callback.RedirectTarget!).ContainsKey("code"), callback.RedirectTarget!.ToString());
    }

    [SkippableFact]
    public async Task Prompt_none_with_a_session_returns_a_code_without_any_page()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var pkce = Pkce.Create();

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}");
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(page.RedirectTarget!)["code"], pkce);
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    [SkippableFact]
    public async Task Prompt_none_for_an_explicit_consent_client_without_consent_redirects_back_with_consent_required()
    {
        var implicitClient = await server.CreatePublicClientAsync();
        var explicitClient = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, implicitClient, user, "openid");

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, explicitClient.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}");
        Assert.Equal("consent_required", OAuth.QueryOf(page.RedirectTarget!)["error"]);
    }

    [SkippableFact]
    public async Task Max_age_zero_sends_a_signed_in_user_to_the_login_page_and_the_new_id_token_carries_auth_time()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var first = await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var firstAuthTime = Jwt.Payload(first.GetProperty("id_token").GetString()!).GetProperty("auth_time").GetInt64();
        var pkce = Pkce.Create();

        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["max_age"] = "0" }), OAuth.IsApp);
        Assert.True(login.RedirectTarget is null && login.Uri.AbsolutePath == "/account/login", $"{(int)login.Status} at {login.Uri} -> {login.RedirectTarget}");

        var callback = await OAuth.SignInAsync(browser, login, user);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget),
            $"Expected a code after signing in again, got {(int)callback.Status} at {callback.Uri}");
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce);
        var id = Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
        Assert.True(id.GetProperty("auth_time").GetInt64() >= firstAuthTime);
        Assert.True(id.GetProperty("auth_time").GetInt64() <= DateTimeOffset.UtcNow.ToUnixTimeSeconds());
    }

    [SkippableTheory]
    [InlineData("3600")]
    [InlineData("999999999999")] // more seconds than a TimeSpan holds
    public async Task A_generous_max_age_does_not_ask_a_freshly_signed_in_user_again_and_the_id_token_carries_auth_time(string maxAge)
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var pkce = Pkce.Create();

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["max_age"] = maxAge }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}");
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(page.RedirectTarget!)["code"], pkce);
        Assert.True(Jwt.Payload(tokens.GetProperty("id_token").GetString()!).TryGetProperty("auth_time", out _));
    }

    [SkippableFact]
    public async Task Prompt_login_with_a_session_shows_the_login_page_and_then_completes()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var pkce = Pkce.Create();
        var state = Unique.Name("state");

        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "login", ["state"] = state }), OAuth.IsApp);
        Assert.True(login.RedirectTarget is null && login.Uri.AbsolutePath == "/account/login", $"{(int)login.Status} at {login.Uri} -> {login.RedirectTarget}");
        Assert.Equal(HttpStatusCode.OK, login.Status);

        var callback = await OAuth.SignInAsync(browser, login, user);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget),
            $"Expected a code after signing in, got {(int)callback.Status} at {callback.Uri}");
        var result = OAuth.QueryOf(callback.RedirectTarget!);
        Assert.Equal(state, result["state"]);
        await OAuth.RedeemAsync(server, client, result["code"], pkce);
    }

    [SkippableFact]
    public async Task Prompt_login_cannot_be_skipped_with_a_forged_or_borrowed_sign_in_marker()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");

        // A marker from another request: the login page's return URL of a first prompt=login request.
        var first = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "login" }), OAuth.IsApp);
        var returnUrl = first.Document.QuerySelector("input[name=ReturnUrl]")?.GetAttribute("value");
        var borrowed = OAuth.QueryOf(new Uri(TestServerFactory.Authority, returnUrl))["x_login_after"];

        foreach (var marker in new[] { borrowed, "0", DateTimeOffset.UtcNow.AddYears(-1).ToUnixTimeSeconds().ToString() })
        {
            var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
                extra: new Dictionary<string, string?> { ["prompt"] = "login", ["x_login_after"] = marker }), OAuth.IsApp);
            Assert.True(page.RedirectTarget is null && page.Uri.AbsolutePath == "/account/login",
                $"marker '{marker}': expected the login page, got {(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
        }
    }
}

public sealed class SqlitePromptTests(SqliteServerFixture server) : PromptTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlPromptTests(PostgreSqlServerFixture server) : PromptTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
