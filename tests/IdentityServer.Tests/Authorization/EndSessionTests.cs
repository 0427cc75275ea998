using System.Net;
using System.Text;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// RP-initiated logout: a valid id_token_hint signs out and redirects to the client's exactly registered
/// post_logout_redirect_uri with state; anything less asks the user first and redirects to no one.
/// </summary>
public abstract class EndSessionTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string SignedOutUri = "https://app.test/signed-out";

    [SkippableFact]
    public async Task A_valid_id_token_hint_signs_out_and_redirects_to_the_registered_uri_with_state()
    {
        var (browser, client, idToken) = await SignInAsync();
        var state = Unique.Name("state");

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["id_token_hint"] = idToken,
            ["post_logout_redirect_uri"] = SignedOutUri,
            ["state"] = state,
        }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        Assert.Equal(SignedOutUri, page.RedirectTarget!.GetLeftPart(UriPartial.Path));
        Assert.Equal(new Dictionary<string, string> { ["state"] = state }, OAuth.QueryOf(page.RedirectTarget));
        await AssertSignedOutAsync(browser, client);
    }

    [SkippableTheory]
    [InlineData("https://evil.test/signed-out")]
    [InlineData("https://app.test/signed-out?extra=1")]
    [InlineData("https://app.test/signed-out/")]
    [InlineData("https://app.test/callback")]
    public async Task An_unregistered_post_logout_redirect_uri_is_not_redirected_to(string postLogoutRedirectUri)
    {
        var (browser, _, idToken) = await SignInAsync();

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["id_token_hint"] = idToken,
            ["post_logout_redirect_uri"] = postLogoutRedirectUri,
            ["state"] = Unique.Name("state"),
        }), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True((int)page.Status < 500, $"{(int)page.Status}:\n{page.Body}");
        Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
        Assert.Equal(TestServerFactory.Authority.Host, page.Uri.Host);
        Assert.DoesNotContain(postLogoutRedirectUri, page.Body);
    }

    [SkippableFact]
    public async Task The_post_logout_redirect_uri_of_another_client_is_not_redirected_to()
    {
        var (browser, _, idToken) = await SignInAsync();
        var otherUri = $"https://{Unique.Name("other")}.test/signed-out";
        await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.PostLogoutRedirectUris = [otherUri];
            c.Scope = "openid";
        });

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["id_token_hint"] = idToken,
            ["post_logout_redirect_uri"] = otherUri,
        }), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True((int)page.Status < 500, $"{(int)page.Status}:\n{page.Body}");
        Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
    }

    [SkippableFact]
    public async Task With_only_a_client_id_the_user_confirms_and_is_then_sent_to_that_clients_registered_uri()
    {
        var (browser, client, _) = await SignInAsync();
        var state = Unique.Name("state");

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["client_id"] = client.ClientId,
            ["post_logout_redirect_uri"] = SignedOutUri,
            ["state"] = state,
        }), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);
        Assert.True(page.RedirectTarget is null && page.Status == HttpStatusCode.OK, $"{(int)page.Status} -> {page.RedirectTarget}");
        await AssertSignedInAsync(browser, client);

        var confirmed = await browser.SubmitAsync(page, button: "button[name=confirm_sign_out]", stopAt: OAuth.IsApp);

        Assert.NotNull(confirmed.RedirectTarget);
        Assert.Equal(SignedOutUri, confirmed.RedirectTarget!.GetLeftPart(UriPartial.Path));
        Assert.Equal(new Dictionary<string, string> { ["state"] = state }, OAuth.QueryOf(confirmed.RedirectTarget));
        await AssertSignedOutAsync(browser, client);
    }

    [SkippableFact]
    public async Task Without_an_id_token_hint_the_user_is_asked_before_being_signed_out()
    {
        var (browser, client, _) = await SignInAsync();

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["post_logout_redirect_uri"] = SignedOutUri,
            ["state"] = Unique.Name("state"),
        }), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        await AssertAskedToConfirmAsync(browser, client, page);
    }

    [SkippableTheory]
    [InlineData("signature")]
    [InlineData("payload")]
    [InlineData("alg_none")]
    public async Task A_tampered_id_token_hint_is_treated_as_none(string tampering)
    {
        var (browser, client, idToken) = await SignInAsync();

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["id_token_hint"] = Tamper(idToken, tampering),
            ["post_logout_redirect_uri"] = SignedOutUri,
            ["state"] = Unique.Name("state"),
        }), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        await AssertAskedToConfirmAsync(browser, client, page);
    }

    /// <summary>Anyone can get a valid id token for their own account: one for another user does not sign this one out unasked.</summary>
    [SkippableFact]
    public async Task A_valid_id_token_hint_for_another_user_asks_before_signing_out()
    {
        var (browser, client, _) = await SignInAsync();
        var (_, _, anotherUsersIdToken) = await SignInAsync();

        var page = await browser.NavigateAsync(await EndSessionUrlAsync(new()
        {
            ["id_token_hint"] = anotherUsersIdToken,
            ["post_logout_redirect_uri"] = SignedOutUri,
            ["state"] = Unique.Name("state"),
        }), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(page.RedirectTarget is null && page.Status == HttpStatusCode.OK, $"{(int)page.Status} at {page.Uri} -> {page.RedirectTarget}:\n{page.Body}");
        Assert.NotNull(page.Document.QuerySelector("form button[name=confirm_sign_out]"));
        await AssertSignedInAsync(browser, client);
    }

    /// <summary>A confirmation page, no sign-out on GET; confirming signs out and redirects to no client.</summary>
    private async Task AssertAskedToConfirmAsync(Browser browser, TestClient client, BrowserPage page)
    {
        Assert.True(page.RedirectTarget is null && page.Status == HttpStatusCode.OK, $"{(int)page.Status} at {page.Uri} -> {page.RedirectTarget}:\n{page.Body}");
        Assert.NotNull(page.Document.QuerySelector("form button[name=confirm_sign_out]"));
        await AssertSignedInAsync(browser, client);

        // The GET showed a page; the session is untouched. Submitting the form (with its antiforgery token) signs out.
        var confirmed = await browser.SubmitAsync(page, button: "button[name=confirm_sign_out]",
            stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(confirmed.RedirectTarget is null, $"Redirected to {confirmed.RedirectTarget}");
        Assert.Equal(HttpStatusCode.OK, confirmed.Status);
        Assert.Equal("/account/signed-out", confirmed.Uri.AbsolutePath);
        await AssertSignedOutAsync(browser, client);
    }

    private async Task<(Browser Browser, TestClient Client, string IdToken)> SignInAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid profile");
        return (browser, client, tokens.GetProperty("id_token").GetString()!);
    }

    private async Task<string> EndSessionUrlAsync(Dictionary<string, string?> parameters) =>
        QueryHelpers.AddQueryString(await server.EndpointAsync("end_session_endpoint"), parameters);

    /// <summary>The session still authorizes: an authorization request goes straight back to the app with a code.</summary>
    private async Task AssertSignedInAsync(Browser browser, TestClient client)
    {
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp);
        Assert.True(page.RedirectTarget is not null && OAuth.QueryOf(page.RedirectTarget).ContainsKey("code"),
            $"Expected to be still signed in, got {(int)page.Status} at {page.Uri}");
    }

    /// <summary>The session no longer authorizes: an authorization request goes to the login page.</summary>
    private async Task AssertSignedOutAsync(Browser browser, TestClient client)
    {
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp);
        Assert.True(page.RedirectTarget is null && page.Uri.AbsolutePath == "/account/login",
            $"Expected the login page, got {(int)page.Status} at {page.Uri} -> {page.RedirectTarget}");
    }

    private static string Tamper(string jwt, string how)
    {
        var parts = jwt.Split('.');
        switch (how)
        {
            case "signature":
                var signature = Base64UrlEncoder.DecodeBytes(parts[2]);
                signature[0] ^= 0xFF;
                parts[2] = Base64UrlEncoder.Encode(signature);
                break;
            case "payload":
                parts[1] = Base64UrlEncoder.Encode(Base64UrlEncoder.Decode(parts[1]).Replace("\"sub\":\"", "\"sub\":\"x", StringComparison.Ordinal));
                break;
            case "alg_none":
                parts[0] = Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes("{\"alg\":\"none\",\"typ\":\"JWT\"}"));
                parts[2] = string.Empty;
                break;
        }

        return string.Join('.', parts);
    }
}

public sealed class SqliteEndSessionTests(SqliteServerFixture server) : EndSessionTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlEndSessionTests(PostgreSqlServerFixture server) : EndSessionTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
