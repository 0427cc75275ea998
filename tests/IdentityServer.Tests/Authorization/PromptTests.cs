using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;

namespace IdentityServer.Tests.Authorization;

/// <summary><c>prompt</c> (none, login, consent, select_account) and <c>max_age</c> as OpenID Connect Core (3.1.2.1) says.</summary>
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
        Assert.False(result.ContainsKey("error_uri"), string.Join(", ", result)); // not OpenIddict's page for "access denied"
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

    /// <summary>
    /// login_hint (OpenID Connect Core 3.1.2.1) fills in the login page's user name, encoded like any value, and moves
    /// the focus to the password; a hint no person could type (too long) is left out. It is only a hint: another
    /// user may still sign in.
    /// </summary>
    [SkippableFact]
    public async Task A_login_hint_fills_in_the_user_name_on_the_login_page()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var other = await server.CreateUserAsync();

        async Task<BrowserPage> LoginPageAsync(Browser browser, string hint, Pkce? pkce = null)
        {
            var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce ?? Pkce.Create(),
                extra: new Dictionary<string, string?> { ["login_hint"] = hint }), OAuth.IsApp);
            Assert.True(page.RedirectTarget is null && page.Uri.AbsolutePath == "/account/login", $"{(int)page.Status} at {page.Uri}");
            return page;
        }

        static AngleSharp.Dom.IElement Field(BrowserPage page, string id) => page.Document.QuerySelector($"#{id}")!;

        var hinted = await LoginPageAsync(server.CreateBrowser(), user.UserName);
        var markup = await LoginPageAsync(server.CreateBrowser(), "<b>\"x\"</b>@example.test");
        var tooLong = await LoginPageAsync(server.CreateBrowser(), new string('a', 300));
        var browser = server.CreateBrowser();
        var pkce = Pkce.Create();
        var hintedButOther = await LoginPageAsync(browser, user.UserName, pkce);

        Assert.Equal(user.UserName, Field(hinted, "Input_UserName").GetAttribute("value"));
        Assert.True(Field(hinted, "Input_Password").HasAttribute("autofocus"));
        Assert.False(Field(hinted, "Input_UserName").HasAttribute("autofocus"));
        Assert.Equal("<b>\"x\"</b>@example.test", Field(markup, "Input_UserName").GetAttribute("value"));
        Assert.DoesNotContain("<b>", markup.Body);
        Assert.Equal("", Field(tooLong, "Input_UserName").GetAttribute("value") ?? "");
        Assert.True(Field(tooLong, "Input_UserName").HasAttribute("autofocus"));
        Assert.False(Field(tooLong, "Input_Password").HasAttribute("autofocus"));
        // Only the authorization endpoint's hint counts: one written into a link by anyone else is not shown.
        var forged = await server.CreateBrowser().NavigateAsync(new Uri(TestServerFactory.Authority,
            "/account/login?returnUrl=" + Uri.EscapeDataString("/connect/authorize?x_login_hint=" + user.UserName)).AbsoluteUri);
        Assert.Equal("", Field(forged, "Input_UserName").GetAttribute("value") ?? "");
        // An empty user name posted is the page's own error, not a server error.
        var emptyBrowser = server.CreateBrowser();
        var empty = await emptyBrowser.SubmitAsync(await LoginPageAsync(emptyBrowser, user.UserName),
            new Dictionary<string, string> { ["Input.UserName"] = "", ["Input.Password"] = "x" });
        Assert.Equal(HttpStatusCode.OK, empty.Status);
        Assert.Contains("Enter your user name or email.", empty.Body);
        // Only a hint: the person signs in as someone else, and the app gets that user's code.
        var callback = await OAuth.SignInAsync(browser, hintedButOther, other);
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce);
        Assert.Equal(other.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    [SkippableFact]
    public async Task Prompt_none_with_a_session_returns_a_code_without_any_page()
    {
        var (client, user, browser) = await SignedInAsync();
        var pkce = Pkce.Create();

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}");
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(page.RedirectTarget!)["code"], pkce);
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    /// <summary>
    /// An application may POST its authorization request (OpenID Connect Core 3.1.2.1; ASP.NET Core's handler with
    /// FormPost does). From another site the browser sends that POST without the SameSite=Lax session cookie (as
    /// Chromium does), so the server sees nobody signed in: it posts the request again from its own page, which the
    /// browser sends with the cookie, rather than answering login_required to a signed-in user.
    /// </summary>
    [SkippableFact]
    public async Task Prompt_none_posted_from_another_site_without_the_session_cookie_still_finds_the_session()
    {
        var (client, user, browser) = await SignedInAsync();
        var pkce = Pkce.Create();
        var authorizeUrl = new Uri(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }));
        var fields = OAuth.QueryOf(authorizeUrl);

        // The cross-site POST as the browser sends it: no cookies of the server's.
        using var crossSite = new HttpRequestMessage(HttpMethod.Post, authorizeUrl.GetLeftPart(UriPartial.Path)) { Content = new FormUrlEncodedContent(fields) };
        crossSite.Headers.Add("Sec-Fetch-Site", "cross-site");
        crossSite.Headers.Add("Sec-Fetch-Dest", "document");
        var response = await server.CreateBrowser().SendAsync(crossSite);
        var resubmit = new BrowserPage(crossSite.RequestUri!, response, await response.Content.ReadAsStringAsync());
        Assert.True(resubmit.Status == HttpStatusCode.OK, $"{(int)resubmit.Status}, to {resubmit.RedirectTarget}:\n{resubmit.Body}");
        Assert.Contains("no-store", resubmit.Response.Headers.CacheControl?.ToString());

        // The page posts it again, same-origin: the signed-in browser sends its session cookie with it.
        var page = await browser.SubmitAsync(resubmit, stopAt: OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.Equal(fields["state"], result["state"]);
        var tokens = await OAuth.RedeemAsync(server, client, result["code"], pkce);
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    /// <summary>
    /// The same POST into another site's frame (a silent prompt=none): there the browser sends no SameSite=Lax cookie even
    /// to a same-origin re-post, and a page of this server, which may not be framed, is blocked (Chromium shows an error
    /// in the frame), so the app would never hear. It gets its login_required at once, as before.
    /// </summary>
    [SkippableFact]
    public async Task Prompt_none_posted_into_another_sites_frame_answers_login_required_at_once()
    {
        var (client, _, _) = await SignedInAsync();
        var pkce = Pkce.Create();
        var authorizeUrl = new Uri(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }));
        var fields = OAuth.QueryOf(authorizeUrl);

        using var framed = new HttpRequestMessage(HttpMethod.Post, authorizeUrl.GetLeftPart(UriPartial.Path)) { Content = new FormUrlEncodedContent(fields) };
        framed.Headers.Add("Sec-Fetch-Site", "cross-site");
        framed.Headers.Add("Sec-Fetch-Dest", "iframe");
        var response = await server.CreateBrowser().SendAsync(framed);
        var page = new BrowserPage(framed.RequestUri!, response, await response.Content.ReadAsStringAsync());

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.Equal("login_required", result["error"]);
        Assert.Equal(fields["state"], result["state"]);
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
        var (client, user, browser) = await SignedInAsync();
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
        var (client, user, browser) = await SignedInAsync();
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
        var (client, user, browser) = await SignedInAsync();

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

    /// <summary>prompt=consent asks even a client whose consent type would not (implicit); the code comes only once accepted.</summary>
    [SkippableFact]
    public async Task Prompt_consent_shows_the_consent_page_for_an_implicit_consent_client()
    {
        var client = await server.CreatePublicClientAsync(consentType: "implicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var state = Unique.Name("state");

        async Task<BrowserPage> ConsentPageAsync()
        {
            var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create(),
                extra: new Dictionary<string, string?> { ["prompt"] = "consent", ["state"] = state }), OAuth.IsApp);
            Assert.True(page.RedirectTarget is null && page.Document.QuerySelector("button[value=accept]") is not null,
                $"Expected the consent page, got {(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
            return page;
        }

        var denied = await browser.SubmitAsync(await ConsentPageAsync(), button: "button[value=deny]", stopAt: OAuth.IsApp);
        var accepted = await browser.SubmitAsync(await ConsentPageAsync(), button: "button[value=accept]", stopAt: OAuth.IsApp);

        Assert.Equal("access_denied", OAuth.QueryOf(denied.RedirectTarget!)["error"]);
        var result = OAuth.QueryOf(accepted.RedirectTarget!);
        Assert.True(result.ContainsKey("code"), string.Join(", ", result));
        Assert.Equal(state, result["state"]);
    }

    /// <summary>
    /// An external client is granted by an administrator only: prompt=consent asks the user to confirm (or decline) that
    /// grant, and without one the client still hears consent_required, page or not.
    /// </summary>
    [SkippableFact]
    public async Task Prompt_consent_for_an_external_consent_client_asks_the_user_to_confirm_what_an_administrator_granted()
    {
        var client = await server.CreatePublicClientAsync(consentType: "external");
        var granted = await server.CreateUserAsync();
        var notGranted = await server.CreateUserAsync();
        await server.GrantAsAdministratorAsync(client, granted, "openid", "profile");
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, granted, "openid profile");
        var otherBrowser = server.CreateBrowser();
        var login = await otherBrowser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp);
        var refused = await OAuth.SignInAsync(otherBrowser, login, notGranted);

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "consent" }), OAuth.IsApp);
        var stillRefused = await otherBrowser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "consent" }), OAuth.IsApp);

        Assert.Equal("consent_required", OAuth.QueryOf(refused.RedirectTarget!)["error"]);
        Assert.Equal("consent_required", OAuth.QueryOf(stillRefused.RedirectTarget!)["error"]);
        Assert.True(page.RedirectTarget is null && page.Document.QuerySelector("button[value=accept]") is not null,
            $"Expected the consent page, got {(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
        var accepted = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: OAuth.IsApp);
        Assert.True(OAuth.QueryOf(accepted.RedirectTarget!).ContainsKey("code"), accepted.RedirectTarget!.ToString());
    }

    [SkippableFact]
    public async Task Prompt_select_account_with_a_session_asks_and_continuing_returns_the_signed_in_users_code()
    {
        var (client, user, browser) = await SignedInAsync();
        var pkce = Pkce.Create();
        var state = Unique.Name("state");

        var chooser = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "select_account", ["state"] = state }), OAuth.IsApp);
        Assert.True(chooser.RedirectTarget is null && chooser.Status == HttpStatusCode.OK, $"{(int)chooser.Status} at {chooser.Uri} -> {chooser.RedirectTarget}");
        Assert.Contains(user.UserName, chooser.Document.QuerySelector("button[value=continue]")?.TextContent);
        Assert.NotNull(chooser.Document.QuerySelector("button[value=another]"));

        var callback = await browser.SubmitAsync(chooser, button: "button[value=continue]", stopAt: OAuth.IsApp);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget), $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
        var result = OAuth.QueryOf(callback.RedirectTarget!);
        Assert.Equal(state, result["state"]);
        var tokens = await OAuth.RedeemAsync(server, client, result["code"], pkce);
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
        var discovery = await OAuth.ReadJsonAsync(await server.CreateClient().GetAsync("/.well-known/openid-configuration"));
        Assert.Contains("select_account", discovery.GetProperty("prompt_values_supported").EnumerateArray().Select(v => v.GetString()));
    }

    [SkippableFact]
    public async Task Prompt_select_account_then_another_account_signs_in_that_user_and_returns_their_code()
    {
        var client = await server.CreatePublicClientAsync();
        var first = await server.CreateUserAsync();
        var second = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, first, "openid");
        var pkce = Pkce.Create();

        var chooser = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce,
            extra: new Dictionary<string, string?> { ["prompt"] = "select_account" }), OAuth.IsApp);
        var login = await browser.SubmitAsync(chooser, button: "button[value=another]", stopAt: OAuth.IsApp);
        Assert.True(login.RedirectTarget is null && login.Uri.AbsolutePath == "/account/login", $"{(int)login.Status} at {login.Uri} -> {login.RedirectTarget}");

        // Signed in from the login page, the user has chosen: no second question.
        var callback = await OAuth.SignInAsync(browser, login, second);

        Assert.True(callback.RedirectTarget is not null && OAuth.IsApp(callback.RedirectTarget), $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
        var tokens = await OAuth.RedeemAsync(server, client, OAuth.QueryOf(callback.RedirectTarget!)["code"], pkce);
        Assert.Equal(second.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }

    [SkippableFact]
    public async Task Prompt_select_account_without_a_session_goes_to_the_login_page_and_asks_nothing_more()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();

        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "select_account" }), OAuth.IsApp);
        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        var callback = await OAuth.SignInAsync(browser, login, user);

        Assert.True(callback.RedirectTarget is not null && OAuth.QueryOf(callback.RedirectTarget).ContainsKey("code"),
            $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
    }

    /// <summary>The choice counts only from the page's own form: in a link, or posted without its antiforgery token, it is not taken.</summary>
    [SkippableFact]
    public async Task The_account_choice_cannot_be_made_for_the_user_by_a_link_or_a_forged_post()
    {
        var (client, user, browser) = await SignedInAsync();
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "select_account" });

        var linked = await browser.NavigateAsync(url + "&x_account=continue", OAuth.IsApp);
        var chooser = await browser.NavigateAsync(url, OAuth.IsApp);
        var forged = await browser.SubmitAsync(chooser, values: new Dictionary<string, string> { ["__RequestVerificationToken"] = "forged" },
            button: "button[value=continue]", stopAt: OAuth.IsApp);

        Assert.True(linked.RedirectTarget is null && linked.Document.QuerySelector("button[value=continue]") is not null,
            $"{(int)linked.Status} at {linked.Uri} -> {linked.RedirectTarget}");
        Assert.True(forged.RedirectTarget is null, $"Redirected to {forged.RedirectTarget}");
        Assert.Equal(HttpStatusCode.BadRequest, forged.Status);
    }

    /// <summary>An explicit client's consent page follows the account choice, and accepting it does not ask for the account again.</summary>
    [SkippableFact]
    public async Task Prompt_select_account_for_an_explicit_consent_client_asks_for_the_account_then_consent_once_each()
    {
        var signInClient = await server.CreatePublicClientAsync();
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, signInClient, user, "openid");

        var chooser = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "select_account" }), OAuth.IsApp);
        var consent = await browser.SubmitAsync(chooser, button: "button[value=continue]", stopAt: OAuth.IsApp);
        Assert.True(consent.RedirectTarget is null && consent.Document.QuerySelector("button[value=accept]") is not null,
            $"Expected the consent page, got {(int)consent.Status} at {consent.Uri} -> {consent.RedirectTarget}");
        var callback = await browser.SubmitAsync(consent, button: "button[value=accept]", stopAt: OAuth.IsApp);

        Assert.True(callback.RedirectTarget is not null && OAuth.QueryOf(callback.RedirectTarget).ContainsKey("code"),
            $"{(int)callback.Status} at {callback.Uri}:\n{callback.Body}");
    }

    /// <summary>What an administrator's grant looks like: a permanent authorization of the client for the user and scopes.</summary>
    /// <summary>A public client, and a user who signed in to it in a browser that keeps the session.</summary>
    private async Task<(TestClient Client, TestUser User, Browser Browser)> SignedInAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        return (client, user, browser);
    }
}

public sealed class SqlitePromptTests(SqliteServerFixture server) : PromptTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlPromptTests(PostgreSqlServerFixture server) : PromptTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
