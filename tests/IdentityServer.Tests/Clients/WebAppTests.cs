using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A server-side web app on ASP.NET Core's stock OpenIdConnect handler (confidential client, client_secret_post,
/// PKCE, form_post, saved tokens, userinfo, PAR by default) signs a user in through the real login page, calls a
/// stock JwtBearer API with its saved access token, refreshes, and signs out back to its signed-out callback.
/// </summary>
public abstract class WebAppTests<TFixture>(TFixture server) : IAsyncLifetime where TFixture : ServerFixture
{
    private static Func<Uri, bool> IsServer => uri => uri.Host == TestServerFactory.Authority.Host;

    [SkippableFact]
    public async Task A_stock_OpenIdConnect_web_app_signs_a_user_in_with_par_and_form_post()
    {
        var app = await ArrangeAsync();

        // The handler pushed the request (PAR): the browser carries only client_id and request_uri.
        var page = await app.Browser.NavigateAsync(TestWebApp.Url("/protected"), IsServer);
        Assert.Equal(HttpStatusCode.Redirect, page.Status);
        var authorize = page.RedirectTarget!;
        Assert.StartsWith(await server.EndpointAsync("authorization_endpoint"), authorize.GetLeftPart(UriPartial.Path));
        var query = QueryHelpers.ParseQuery(authorize.Query);
        Assert.Equal(app.Client.ClientId, query["client_id"].ToString());
        Assert.StartsWith("urn:ietf:params:oauth:request_uri:", query["request_uri"].ToString());
        Assert.False(query.ContainsKey("code_challenge") || query.ContainsKey("redirect_uri") || query.ContainsKey("scope"),
            $"Expected a pushed request, got {authorize}");

        page = await app.Browser.NavigateAsync(authorize.AbsoluteUri);
        page = await OAuth.SignInAsync(app.Browser, page, app.User, stopAt: _ => false);

        // The server answers with its form_post page, which the browser submits to the app's callback.
        var form = page.Document.QuerySelector("form");
        Assert.True(form is not null, $"Expected the form_post page, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        Assert.Equal(TestWebApp.RedirectUri, form.GetAttribute("action"));
        Assert.Equal("post", form.GetAttribute("method"));
        Assert.NotNull(form.QuerySelector("input[name=code]"));
        Assert.NotNull(form.QuerySelector("input[name=state]"));
        Assert.Null(form.QuerySelector("input[name=access_token]"));

        page = await app.Browser.SubmitAsync(page);
        Assert.Equal(TestWebApp.Url("/protected"), page.Uri.AbsoluteUri);
        Assert.Equal(HttpStatusCode.OK, page.Status);
        var shown = JsonDocument.Parse(page.Body).RootElement;
        Assert.Equal(app.User.Id, shown.GetProperty("sub").GetString());
        Assert.Equal(app.User.UserName, shown.GetProperty("name").GetString());
        Assert.Equal(app.User.Email, shown.GetProperty("email").GetString());
        Assert.Equal(app.User.Id, shown.GetProperty("userinfo_sub").GetString());
    }

    [SkippableFact]
    public async Task A_stock_OpenIdConnect_web_app_calls_the_api_with_its_saved_token_and_again_after_a_refresh()
    {
        var app = await ArrangeAsync();
        await SignInAsync(app);

        var first = await GetJsonAsync(app, "/call-api");
        Assert.True(first.GetProperty("api_status").GetInt32() == 200, first.ToString());
        var whoami = JsonDocument.Parse(first.GetProperty("api_body").GetString()!).RootElement;
        Assert.Equal(app.User.Id, whoami.GetProperty("sub").GetString());
        Assert.Equal(app.Client.ClientId, whoami.GetProperty("client_id").GetString());
        var firstToken = first.GetProperty("access_token").GetString()!;

        var refresh = await GetJsonAsync(app, "/refresh");
        Assert.True(refresh.GetProperty("token_status").GetInt32() == 200, refresh.ToString());
        Assert.NotEqual(refresh.GetProperty("old_refresh_token").GetString(), refresh.GetProperty("new_refresh_token").GetString());
        var refreshed = refresh.GetProperty("new_access_token").GetString()!;
        Assert.NotEqual(Jwt.Payload(firstToken).GetProperty("jti").GetString(), Jwt.Payload(refreshed).GetProperty("jti").GetString());
        Assert.Equal(Jwt.Payload(firstToken).GetProperty("aud").ToString(), Jwt.Payload(refreshed).GetProperty("aud").ToString());

        var second = await GetJsonAsync(app, "/call-api");
        Assert.Equal(refreshed, second.GetProperty("access_token").GetString());
        Assert.True(second.GetProperty("api_status").GetInt32() == 200, second.ToString());
        Assert.Equal(app.User.Id, JsonDocument.Parse(second.GetProperty("api_body").GetString()!).RootElement.GetProperty("sub").GetString());
    }

    [SkippableFact]
    public async Task A_stock_OpenIdConnect_web_app_signs_out_through_end_session_back_to_its_signed_out_callback()
    {
        var app = await ArrangeAsync();
        await SignInAsync(app);

        var page = await app.Browser.NavigateAsync(TestWebApp.Url("/signout"), IsServer);
        var endSession = page.RedirectTarget!;
        Assert.Equal(await server.EndpointAsync("end_session_endpoint"), endSession.GetLeftPart(UriPartial.Path));
        var query = QueryHelpers.ParseQuery(endSession.Query);
        Assert.Equal(TestWebApp.PostLogoutRedirectUri, query["post_logout_redirect_uri"].ToString());
        Assert.Equal(app.User.Id, Jwt.Payload(query["id_token_hint"].ToString()).GetProperty("sub").GetString());
        Assert.False(string.IsNullOrEmpty(query["state"]));

        // A valid id_token_hint: no confirmation page; the server redirects back to the app's callback with the
        // state, and the app completes its sign-out by redirecting to its own page.
        page = await app.Browser.NavigateAsync(endSession.AbsoluteUri, stopAt: uri => uri.Host == TestWebApp.Host);
        Assert.True(page.RedirectTarget is not null, $"Expected a redirect to the app, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        Assert.Equal(TestWebApp.PostLogoutRedirectUri, page.RedirectTarget.GetLeftPart(UriPartial.Path));
        Assert.Equal(query["state"].ToString(), QueryHelpers.ParseQuery(page.RedirectTarget.Query)["state"].ToString());

        page = await app.Browser.NavigateAsync(page.RedirectTarget.AbsoluteUri);
        Assert.Equal(TestWebApp.Url("/signed-out"), page.Uri.AbsoluteUri);
        Assert.False(JsonDocument.Parse(page.Body).RootElement.GetProperty("signed_in").GetBoolean());

        // Both sessions ended: the app sends the browser to the server again, which asks the user to sign in.
        page = await app.Browser.NavigateAsync(TestWebApp.Url("/protected"));
        Assert.Equal("/account/login", page.Uri.AbsolutePath);
    }

    private sealed record WebApp(Browser Browser, TestClient Client, TestUser User);

    /// <summary>A test API, a scope for it, the web app's client, a user, the web app itself and a browser knowing both hosts.</summary>
    private async Task<WebApp> ArrangeAsync()
    {
        var api = await TestApi.StartAsync(server, TestApi.NewAudience());
        var apiScope = await server.CreateScopeAsync(api.Audience);
        string[] scopes = ["openid", "profile", "email", "offline_access", apiScope];
        var client = await server.CreateClientAsync(c =>
        {
            c.ClientSecret = Unique.Secret();
            c.TokenEndpointAuthMethod = "client_secret_post";
            c.GrantTypes = ["authorization_code", "refresh_token"];
            c.RedirectUris = [TestWebApp.RedirectUri];
            c.PostLogoutRedirectUris = [TestWebApp.PostLogoutRedirectUri];
            c.Scope = string.Join(' ', scopes);
            c.ConsentType = "implicit";
        });
        var user = await server.CreateUserAsync();
        var webApp = await TestWebApp.StartAsync(server, client, scopes, api);
        _disposables.Add(webApp);
        _disposables.Add(api);

        var browser = server.CreateBrowser();
        browser.AddHost(TestWebApp.Host, webApp.CreateHandler());
        return new WebApp(browser, client, user);
    }

    private static async Task SignInAsync(WebApp app)
    {
        var page = await app.Browser.NavigateAsync(TestWebApp.Url("/protected"));
        page = await OAuth.SignInAsync(app.Browser, page, app.User, stopAt: _ => false);
        page = await app.Browser.SubmitAsync(page);
        Assert.True(page.Uri.AbsoluteUri == TestWebApp.Url("/protected") && page.Status == HttpStatusCode.OK,
            $"Sign-in did not complete: {(int)page.Status} at {page.Uri}:\n{page.Body}");
    }

    private static async Task<JsonElement> GetJsonAsync(WebApp app, string path)
    {
        var page = await app.Browser.NavigateAsync(TestWebApp.Url(path));
        Assert.True(page.Status == HttpStatusCode.OK && page.Uri.AbsoluteUri == TestWebApp.Url(path), $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        return JsonDocument.Parse(page.Body).RootElement.Clone();
    }

    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var disposable in _disposables)
        {
            await disposable.DisposeAsync();
        }
    }
}

public sealed class SqliteWebAppTests(SqliteServerFixture server) : WebAppTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlWebAppTests(PostgreSqlServerFixture server) : WebAppTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
