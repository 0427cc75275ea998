using System.Buffers.Text;
using System.Net;
using System.Text;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// The authorization code flow of a public client (code + PKCE) through the real login and consent pages, and
/// what the tokens it yields are good for: userinfo, revocation, introspection.
/// </summary>
public abstract class CodeFlowTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_public_client_signs_in_through_login_and_consent_and_gets_tokens_an_api_can_verify()
    {
        var resource = $"https://{Unique.Name("api")}.test/";
        var apiScope = await server.CreateScopeAsync(resource);
        var scope = $"openid profile email offline_access {apiScope}";
        var client = await server.CreatePublicClientAsync(scope, consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var pkce = Pkce.Create();
        var (state, nonce) = (Unique.Name("state"), Unique.Name("nonce"));

        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, scope, pkce,
            extra: new Dictionary<string, string?> { ["state"] = state, ["nonce"] = nonce }), OAuth.IsApp);
        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        Assert.NotNull(login.Document.QuerySelector("form input[name=__RequestVerificationToken]"));

        var consent = await OAuth.SignInAsync(browser, login, user);
        Assert.Null(consent.RedirectTarget);
        Assert.Equal(HttpStatusCode.OK, consent.Status);
        Assert.NotNull(consent.Document.QuerySelector("button[value=accept]"));
        Assert.Contains(apiScope, consent.Body);

        var callback = await browser.SubmitAsync(consent, button: "button[value=accept]", stopAt: OAuth.IsApp);
        Assert.NotNull(callback.RedirectTarget);
        Assert.Equal(OAuth.AppRedirectUri, callback.RedirectTarget!.GetLeftPart(UriPartial.Path));
        var result = OAuth.QueryOf(callback.RedirectTarget);
        Assert.Equal(state, result["state"]);
        Assert.Equal(await server.EndpointAsync("issuer"), result["iss"]); // RFC 9207: the client can tell which server answered
        var tokens = await OAuth.RedeemAsync(server, client, result["code"], pkce);
        Assert.Equal("Bearer", tokens.GetProperty("token_type").GetString());
        Assert.False(string.IsNullOrEmpty(tokens.GetProperty("refresh_token").GetString()));

        // The id token: signed with a key from the published JWKS, by the issuer of discovery, for this client.
        var idToken = tokens.GetProperty("id_token").GetString()!;
        var idResult = await OAuth.ValidateJwtAsync(server, idToken, audience: client.ClientId);
        Assert.True(idResult.IsValid, idResult.Exception?.ToString());
        var id = Jwt.Payload(idToken);
        Assert.Equal(await server.EndpointAsync("issuer"), id.GetProperty("iss").GetString());
        Assert.Equal([client.ClientId], Jwt.Strings(id.GetProperty("aud")));
        Assert.Equal(nonce, id.GetProperty("nonce").GetString());
        Assert.Equal(user.Id, id.GetProperty("sub").GetString());
        Assert.Equal(user.UserName, id.GetProperty("preferred_username").GetString());
        Assert.Equal(user.Email, id.GetProperty("email").GetString());

        // The access token: an RFC 9068 JWT for the resource of the granted custom scope.
        var accessToken = tokens.GetProperty("access_token").GetString()!;
        Assert.Equal("at+jwt", Jwt.Header(accessToken).GetProperty("typ").GetString());
        var accessResult = await OAuth.ValidateJwtAsync(server, accessToken, audience: resource, type: "at+jwt");
        Assert.True(accessResult.IsValid, accessResult.Exception?.ToString());
        var access = Jwt.Payload(accessToken);
        Assert.Equal(user.Id, access.GetProperty("sub").GetString());
        Assert.Equal(client.ClientId, access.GetProperty("client_id").GetString());
        Assert.Equal(scope.Split(' ').Order(), access.GetProperty("scope").GetString()!.Split(' ').Order());
        Assert.Equal([resource], Jwt.Strings(access.GetProperty("aud")));
        Assert.True(access.GetProperty("iat").GetInt64() > 0);
        Assert.True(access.GetProperty("exp").GetInt64() > access.GetProperty("iat").GetInt64());
        Assert.False(string.IsNullOrEmpty(access.GetProperty("jti").GetString()));
    }

    [SkippableFact]
    public async Task Explicit_consent_is_remembered_for_the_same_client_and_scopes()
    {
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create()), user);

        var again = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create()), OAuth.IsApp);

        Assert.True(again.RedirectTarget is not null && OAuth.IsApp(again.RedirectTarget), $"Expected no consent page, got {again.Uri}:\n{again.Body}");
        Assert.True(OAuth.QueryOf(again.RedirectTarget!).ContainsKey("code"));
    }

    [SkippableFact]
    public async Task Asking_for_more_scopes_than_consented_shows_the_consent_page_again()
    {
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create()), user);

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile email", Pkce.Create()), OAuth.IsApp);

        AssertConsentPage(page);
    }

    [SkippableFact]
    public async Task Prompt_consent_shows_the_consent_page_again_after_consent_was_given()
    {
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create()), user);

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "consent" }), OAuth.IsApp);

        AssertConsentPage(page);
        var accepted = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: OAuth.IsApp);
        Assert.True(OAuth.QueryOf(accepted.RedirectTarget!).ContainsKey("code"));
    }

    [SkippableFact]
    public async Task Denying_consent_redirects_back_with_access_denied()
    {
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var state = Unique.Name("state");
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["state"] = state }), OAuth.IsApp);
        var consent = await OAuth.SignInAsync(browser, login, user);
        AssertConsentPage(consent);

        var denied = await browser.SubmitAsync(consent, button: "button[value=deny]", stopAt: OAuth.IsApp);

        Assert.True(denied.RedirectTarget is not null && OAuth.IsApp(denied.RedirectTarget), $"{denied.Uri}:\n{denied.Body}");
        var result = OAuth.QueryOf(denied.RedirectTarget!);
        Assert.Equal("access_denied", result["error"]);
        Assert.Equal(state, result["state"]);
        Assert.False(result.ContainsKey("code"));
    }

    [SkippableFact]
    public async Task Userinfo_returns_the_subject_and_the_claims_of_the_granted_scopes()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid profile email");

        var response = await OAuth.UserInfoAsync(server, tokens.GetProperty("access_token").GetString()!);

        var info = await OAuth.ReadJsonAsync(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(user.Id, info.GetProperty("sub").GetString());
        Assert.Equal(user.UserName, info.GetProperty("preferred_username").GetString());
        Assert.Equal(user.UserName, info.GetProperty("name").GetString());
        Assert.Equal(user.Email, info.GetProperty("email").GetString());
        Assert.True(info.GetProperty("email_verified").GetBoolean());
    }

    /// <summary>Both answers describe a user and a token: no browser or proxy cache may keep them.</summary>
    [SkippableFact]
    public async Task Userinfo_and_introspection_answers_may_not_be_cached()
    {
        var (api, _, _, _, accessToken) = await SignedInForAnApiAsync();

        var userInfo = await OAuth.UserInfoAsync(server, accessToken);
        var introspection = await OAuth.PostFormAsync(server, "introspection_endpoint", new Dictionary<string, string> { ["token"] = accessToken }, api);

        foreach (var response in new[] { userInfo, introspection })
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.CacheControl?.NoStore == true, $"{response.RequestMessage?.RequestUri}: Cache-Control {response.Headers.CacheControl}");
        }
    }

    [SkippableFact]
    public async Task Userinfo_leaves_out_the_claims_of_scopes_that_were_not_granted()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid profile");

        var info = await OAuth.ReadJsonAsync(await OAuth.UserInfoAsync(server, tokens.GetProperty("access_token").GetString()!));

        Assert.Equal(user.Id, info.GetProperty("sub").GetString());
        Assert.Equal(user.UserName, info.GetProperty("preferred_username").GetString());
        Assert.False(info.TryGetProperty("email", out _), info.ToString());
    }

    [SkippableFact]
    public async Task Userinfo_refuses_an_access_token_without_the_openid_scope()
    {
        var apiScope = await server.CreateScopeAsync($"https://{Unique.Name("api")}.test/");
        var client = await server.CreatePublicClientAsync($"profile {apiScope}");
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, $"profile {apiScope}");
        Assert.False(tokens.TryGetProperty("id_token", out _));

        var response = await OAuth.UserInfoAsync(server, tokens.GetProperty("access_token").GetString()!);

        // A valid token, but not for userinfo: RFC 6750 3.1.
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("error=\"insufficient_scope\"", response.Headers.WwwAuthenticate.ToString());
    }

    [SkippableFact]
    public async Task A_revoked_refresh_token_can_no_longer_be_used()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var refreshToken = tokens.GetProperty("refresh_token").GetString()!;

        var revoked = await OAuth.RevokeAsync(server, client, refreshToken, "refresh_token");
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);

        var refresh = await OAuth.RefreshAsync(server, client, refreshToken);
        Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refresh)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task Introspection_shows_a_valid_access_token_as_active_until_it_is_revoked()
    {
        var (api, apiScope, client, user, accessToken) = await SignedInForAnApiAsync();

        var active = await OAuth.IntrospectAsync(server, api, accessToken);
        Assert.True(active.GetProperty("active").GetBoolean(), active.ToString());
        Assert.Equal(user.Id, active.GetProperty("sub").GetString());
        Assert.Equal(client.ClientId, active.GetProperty("client_id").GetString());
        Assert.Equal(["openid", apiScope], active.GetProperty("scope").GetString()!.Split(' ').Order());
        Assert.Contains(api.ClientId, Jwt.Strings(active.GetProperty("aud")));
        Assert.Equal(await server.EndpointAsync("issuer"), active.GetProperty("iss").GetString());

        var revoked = await OAuth.RevokeAsync(server, client, accessToken, "access_token");
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);

        var inactive = await OAuth.IntrospectAsync(server, api, accessToken);
        Assert.False(inactive.GetProperty("active").GetBoolean(), inactive.ToString());
        Assert.False(inactive.TryGetProperty("sub", out _));
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);
    }

    /// <summary>
    /// The server remembers the signatures it has verified (a resource server introspects the same token on each of
    /// its calls): a token changed after it was introspected, its claims with the old signature or the other way round,
    /// must still be checked in full, and refused.
    /// </summary>
    [SkippableFact]
    public async Task A_token_changed_after_it_was_introspected_is_inactive_while_the_original_stays_active()
    {
        var (api, _, _, user, accessToken) = await SignedInForAnApiAsync();
        var other = await server.CreateUserAsync();
        Assert.True((await OAuth.IntrospectAsync(server, api, accessToken)).GetProperty("active").GetBoolean());

        var parts = accessToken.Split('.');
        var payload = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[1]));
        Assert.Contains(user.Id, payload);
        var otherUsersClaims = Base64Url.EncodeToString(Encoding.UTF8.GetBytes(payload.Replace(user.Id, other.Id, StringComparison.Ordinal)));
        var signature = Base64Url.DecodeFromChars(parts[2]);
        signature[0] ^= 1;
        string[] changed =
        [
            string.Join('.', parts[0], otherUsersClaims, parts[2]),
            string.Join('.', parts[0], parts[1], Base64Url.EncodeToString(signature)),
        ];

        foreach (var token in changed)
        {
            var result = await OAuth.IntrospectAsync(server, api, token);
            Assert.False(result.GetProperty("active").GetBoolean(), result.ToString());
        }

        var again = await OAuth.IntrospectAsync(server, api, accessToken);
        Assert.True(again.GetProperty("active").GetBoolean(), again.ToString());
        Assert.Equal(user.Id, again.GetProperty("sub").GetString());
    }

    [SkippableFact]
    public async Task Introspection_by_a_client_that_is_not_an_audience_of_the_token_shows_it_inactive()
    {
        var api = await server.CreateConfidentialClientAsync();
        var stranger = await server.CreateConfidentialClientAsync();
        var apiScope = await server.CreateScopeAsync(api.ClientId);
        var client = await server.CreatePublicClientAsync($"openid {apiScope}");
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, await server.CreateUserAsync(), $"openid {apiScope}");

        var result = await OAuth.IntrospectAsync(server, stranger, tokens.GetProperty("access_token").GetString()!);

        Assert.False(result.GetProperty("active").GetBoolean(), result.ToString());
        Assert.False(result.TryGetProperty("sub", out _));
    }

    [SkippableTheory]
    [InlineData("not-a-token")]
    [InlineData("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")]
    public async Task Introspection_shows_an_unknown_or_garbage_token_as_inactive(string token)
    {
        var api = await server.CreateConfidentialClientAsync();

        var result = await OAuth.IntrospectAsync(server, api, token);

        Assert.False(result.GetProperty("active").GetBoolean(), result.ToString());
        Assert.False(result.TryGetProperty("sub", out _));
    }

    /// <summary>
    /// A user signed in to an app whose scope names an API: the API introspects tokens issued for it (its client id is
    /// the resource of the scope).
    /// </summary>
    private async Task<(TestClient Api, string ApiScope, TestClient Client, TestUser User, string AccessToken)> SignedInForAnApiAsync()
    {
        var api = await server.CreateConfidentialClientAsync();
        var apiScope = await server.CreateScopeAsync(api.ClientId);
        var client = await server.CreatePublicClientAsync($"openid profile {apiScope}");
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, $"openid {apiScope}");
        return (api, apiScope, client, user, tokens.GetProperty("access_token").GetString()!);
    }

    private static void AssertConsentPage(BrowserPage page)
    {
        Assert.True(page.RedirectTarget is null && page.Status == HttpStatusCode.OK, $"Expected the consent page, got {(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
        Assert.NotNull(page.Document.QuerySelector("button[value=accept]"));
    }
}

public sealed class SqliteCodeFlowTests(SqliteServerFixture server) : CodeFlowTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlCodeFlowTests(PostgreSqlServerFixture server) : CodeFlowTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
