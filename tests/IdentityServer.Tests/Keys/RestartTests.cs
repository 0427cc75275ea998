using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Keys;

/// <summary>
/// Keys are never ephemeral: what the server issued before a restart (signed access tokens, encrypted refresh
/// tokens, Data Protection cookies) is still good after it. Each test restarts the class's own server.
/// </summary>
public abstract class RestartTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private async Task<(string Issuer, JsonWebKeySet Keys)> PublishedKeysAsync()
    {
        var http = server.CreateClient();
        var discovery = await HttpProtocol.DiscoverAsync(http);
        var jwks = await http.GetStringAsync(discovery.GetProperty("jwks_uri").GetString());
        return (discovery.GetProperty("issuer").GetString()!, new JsonWebKeySet(jwks));
    }

    [SkippableFact]
    public async Task An_access_token_issued_before_a_restart_validates_against_the_keys_published_after_it()
    {
        const string resource = "https://restart-api.test";
        var scope = await server.CreateScopeAsync(resource);
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!, scope);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        var accessToken = json.GetProperty("access_token").GetString()!;
        var before = await PublishedKeysAsync();

        await server.RestartAsync();

        var after = await PublishedKeysAsync();
        Assert.Equal(before.Keys.Keys.Select(k => k.Kid).Order(), after.Keys.Keys.Select(k => k.Kid).Order());
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(accessToken, new TokenValidationParameters
        {
            ValidIssuer = after.Issuer,
            ValidAudience = resource,
            ValidTypes = ["at+jwt"],
            IssuerSigningKeys = after.Keys.GetSigningKeys(),
        });
        Assert.True(result.IsValid, result.Exception?.ToString());
        Assert.Equal(client.ClientId, result.Claims["client_id"]);
    }

    [SkippableFact]
    public async Task A_refresh_token_issued_before_a_restart_redeems_after_it()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");

        await server.RestartAsync();

        var response = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        var refreshed = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, refreshed.ToString());
        Assert.Equal(user.Id, Jwt.Payload(refreshed.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
        Assert.NotEqual(tokens.GetProperty("refresh_token").GetString(), refreshed.GetProperty("refresh_token").GetString());
    }

    [SkippableFact]
    public async Task A_browser_session_from_before_a_restart_still_signs_the_user_in_after_it()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");

        await server.RestartAsync();
        browser.AddHost(TestServerFactory.Authority.Host, server.Factory.Server.CreateHandler());

        // prompt=none: no login page can be shown, so only the session cookie from before the restart can answer.
        var pkce = Pkce.Create();
        var result = await OAuth.AuthorizeAsync(browser,
            await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce, extra: new Dictionary<string, string?> { ["prompt"] = "none" }),
            user: null);
        Assert.True(result.ContainsKey("code"), string.Join(", ", result));
        var tokens = await OAuth.RedeemAsync(server, client, result["code"], pkce);
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
    }
}

public sealed class SqliteRestartTests(SqliteServerFixture server) : RestartTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlRestartTests(PostgreSqlServerFixture server) : RestartTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
