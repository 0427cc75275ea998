using System.Net;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// What an admin registers through the API works at once, with no restart and no wait: a machine client gets a
/// token an API accepts; a single-page app signs a person in (code + PKCE, login page) from its own origin.
/// </summary>
public abstract class AdminEndToEndTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_machine_client_registered_through_the_api_gets_a_token_its_api_accepts_at_once()
    {
        var admin = await AdminAsync(server);
        var audience = TestApi.NewAudience();
        var scope = Unique.Name("billing");
        await (await admin.PostJsonAsync(ScopesUrl, Json(new { name = scope, resources = new[] { audience } }))).ExpectAsync(HttpStatusCode.Created);
        var created = await (await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = Unique.Name("billing-job"),
            grant_types = new[] { "client_credentials" },
            token_endpoint_auth_method = "client_secret_post",
            scope,
        }))).ExpectAsync(HttpStatusCode.Created);
        var clientId = created.GetProperty("client_id").GetString()!;
        var secret = created.GetProperty("client_secret").GetString()!;

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["client_id"] = clientId,
            ["client_secret"] = secret,
            ["scope"] = scope,
        });
        var token = (await response.ExpectAsync(HttpStatusCode.OK)).GetProperty("access_token").GetString()!;

        await using var api = await TestApi.StartAsync(server, audience);
        var whoami = await (await api.CallAsync(token)).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(clientId, whoami.GetProperty("client_id").GetString());
    }

    [SkippableFact]
    public async Task A_spa_registered_through_the_api_signs_a_person_in_from_its_origin_at_once_and_stops_when_deleted()
    {
        var admin = await AdminAsync(server);
        var origin = $"https://{Unique.Name("spa")}.test";
        var redirectUri = $"{origin}/callback";
        var tokenEndpoint = await server.EndpointAsync("token_endpoint");
        // The origin is not allowed yet, and the server has just looked it up (its origin cache is warm).
        Assert.False(await IsAllowedAsync(tokenEndpoint, origin));

        var clientId = Unique.Name("spa");
        var created = await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId,
            client_name = "Orders SPA",
            grant_types = new[] { "authorization_code", "refresh_token" },
            redirect_uris = new[] { redirectUri },
            token_endpoint_auth_method = "none",
            scope = "openid profile offline_access",
            consent_type = "implicit",
        }));
        await created.ExpectAsync(HttpStatusCode.Created);
        Assert.True(await IsAllowedAsync(tokenEndpoint, origin));

        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var browser = server.CreateBrowser();
        var login = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid profile offline_access", pkce, redirectUri));
        Assert.Equal("/account/login", login.Uri.AbsolutePath);
        var callback = await OAuth.SignInAsync(browser, login, user, stopAt: uri => uri.AbsoluteUri.StartsWith(redirectUri, StringComparison.Ordinal));
        Assert.True(callback.RedirectTarget?.AbsoluteUri.StartsWith(redirectUri, StringComparison.Ordinal) == true, $"{(int)callback.Status} {callback.Uri}\n{callback.Body}");
        var code = OAuth.QueryOf(callback.RedirectTarget!)["code"];

        using var redeem = new HttpRequestMessage(HttpMethod.Post, tokenEndpoint)
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "authorization_code",
                ["client_id"] = clientId,
                ["code"] = code,
                ["redirect_uri"] = redirectUri,
                ["code_verifier"] = pkce.Verifier,
            }),
        };
        redeem.Headers.Add("Origin", origin);
        var tokens = await server.CreateClient().SendAsync(redeem);
        var json = await tokens.ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([origin], tokens.Headers.GetValues("Access-Control-Allow-Origin"));
        Assert.Equal(user.Id, Jwt.Payload(json.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());

        await (await admin.DeleteAsync(Path(ClientsUrl, clientId), null)).ExpectAsync(HttpStatusCode.NoContent);
        Assert.False(await IsAllowedAsync(tokenEndpoint, origin));
        var refreshed = await OAuth.RefreshAsync(server, new TestClient(clientId, null, new()), json.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(refreshed)).GetProperty("error").GetString());
    }

    private async Task<bool> IsAllowedAsync(string url, string origin)
    {
        using var preflight = new HttpRequestMessage(HttpMethod.Options, url);
        preflight.Headers.Add("Origin", origin);
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        var response = await server.CreateClient().SendAsync(preflight);
        return response.Headers.TryGetValues("Access-Control-Allow-Origin", out var values) && values.Single() == origin;
    }
}

public sealed class SqliteAdminEndToEndTests(SqliteServerFixture server)
    : AdminEndToEndTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminEndToEndTests(PostgreSqlServerFixture server)
    : AdminEndToEndTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
