using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// An API whose resource is a URL (the scope's <c>resources</c>, so the token's <c>aud</c>) cannot be a client by that
/// name: a client_id holds no <c>/</c>. Registered with the URL among its <c>audience_aliases</c>, it introspects,
/// revokes and exchanges the access tokens naming it, as an API named by its client_id does.
/// </summary>
public abstract class AudienceAliasTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string TokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    private const string AccessTokenType = "urn:ietf:params:oauth:token-type:access_token";

    private sealed record SignedIn(TestClient Api, TestClient App, string Scope, string AccessToken, string RefreshToken);

    /// <summary>A user signed in to an app for a scope whose resource is <paramref name="resource"/>; an API registered with <paramref name="aliases"/>.</summary>
    private async Task<SignedIn> SignedInAsync(string resource, params string[] aliases)
    {
        var scope = await server.CreateScopeAsync(resource);
        var api = await server.CreateConfidentialClientAsync(c =>
        {
            c.ClientId = Unique.Name("api");
            c.GrantTypes = ["client_credentials", TokenExchange];
            c.Scope = scope;
            c.AudienceAliases = aliases.Length > 0 ? [.. aliases] : null;
        });
        var app = await server.CreatePublicClientAsync($"openid offline_access {scope}");
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), app, await server.CreateUserAsync(), $"openid offline_access {scope}");
        return new SignedIn(api, app, scope, tokens.GetProperty("access_token").GetString()!, tokens.GetProperty("refresh_token").GetString()!);
    }

    private static string Resource() => $"https://{Unique.Name("api")}.example.com/v1";

    [SkippableFact]
    public async Task An_api_introspects_a_token_naming_its_alias_as_audience()
    {
        var resource = Resource();
        var signedIn = await SignedInAsync(resource, resource);
        Assert.Equal([resource], Jwt.Strings(Jwt.Payload(signedIn.AccessToken).GetProperty("aud")));

        var introspected = await OAuth.IntrospectAsync(server, signedIn.Api, signedIn.AccessToken);

        Assert.True(introspected.GetProperty("active").GetBoolean(), introspected.ToString());
        // What an API named by its client_id is told too: the scopes, the user and the client.
        Assert.Contains(signedIn.Scope, introspected.GetProperty("scope").GetString()!.Split(' '));
        Assert.Equal(Jwt.Payload(signedIn.AccessToken).GetProperty("sub").GetString(), introspected.GetProperty("sub").GetString());
        Assert.Equal(signedIn.App.ClientId, introspected.GetProperty("client_id").GetString());
        Assert.Equal([resource], Jwt.Strings(introspected.GetProperty("aud")));
    }

    [SkippableFact]
    public async Task Without_the_alias_or_with_another_the_token_is_inactive_to_the_api()
    {
        var resource = Resource();
        var unnamed = await SignedInAsync(resource);
        var elsewhere = await SignedInAsync(resource, Resource());

        Assert.False((await OAuth.IntrospectAsync(server, unnamed.Api, unnamed.AccessToken)).GetProperty("active").GetBoolean());
        Assert.False((await OAuth.IntrospectAsync(server, elsewhere.Api, elsewhere.AccessToken)).GetProperty("active").GetBoolean());
    }

    /// <summary>An alias stands for an audience, and refresh tokens have none: they stay the app's alone.</summary>
    [SkippableFact]
    public async Task An_alias_gives_no_hold_on_the_apps_refresh_token()
    {
        var resource = Resource();
        var signedIn = await SignedInAsync(resource, resource);

        Assert.False((await OAuth.IntrospectAsync(server, signedIn.Api, signedIn.RefreshToken)).GetProperty("active").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, (await RevokeAsync(signedIn.Api, signedIn.RefreshToken)).StatusCode); // RFC 7009 2.2: 200, and nothing revoked
        Assert.Equal(HttpStatusCode.OK, (await OAuth.RefreshAsync(server, signedIn.App, signedIn.RefreshToken)).StatusCode);
    }

    /// <summary>Anyone may claim a public client's client_id: aliases count for confidential clients only, even one stored past the validator.</summary>
    [SkippableFact]
    public async Task A_public_client_stored_with_an_alias_cannot_revoke_the_tokens_naming_it()
    {
        var resource = Resource();
        var signedIn = await SignedInAsync(resource);
        var pretender = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.AudienceAliases = [resource];
        });

        Assert.Equal(HttpStatusCode.OK, (await OAuth.RevokeAsync(server, pretender, signedIn.AccessToken)).StatusCode); // RFC 7009 2.2: 200, and nothing revoked

        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, signedIn.AccessToken)).StatusCode);
    }

    /// <summary>An alias the validator would refuse (here another API's client_id, stored past it) counts for nothing.</summary>
    [SkippableFact]
    public async Task A_stored_alias_that_is_not_a_uri_counts_for_nothing()
    {
        var api = await server.CreateConfidentialClientAsync(c => c.Scope = null);
        var scope = await server.CreateScopeAsync(api.ClientId);
        var pretender = await server.CreateConfidentialClientAsync(c => c.AudienceAliases = [api.ClientId]);
        var app = await server.CreatePublicClientAsync($"openid {scope}");
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), app, await server.CreateUserAsync(), $"openid {scope}");
        var accessToken = tokens.GetProperty("access_token").GetString()!;

        Assert.True((await OAuth.IntrospectAsync(server, api, accessToken)).GetProperty("active").GetBoolean());
        Assert.False((await OAuth.IntrospectAsync(server, pretender, accessToken)).GetProperty("active").GetBoolean());
    }

    [SkippableFact]
    public async Task An_api_revokes_a_token_naming_its_alias()
    {
        var resource = Resource();
        var signedIn = await SignedInAsync(resource, resource);

        Assert.Equal(HttpStatusCode.OK, (await RevokeAsync(signedIn.Api, signedIn.AccessToken)).StatusCode);

        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, signedIn.AccessToken)).StatusCode);
    }

    [SkippableFact]
    public async Task An_api_exchanges_a_token_naming_its_alias()
    {
        var resource = Resource();
        var signedIn = await SignedInAsync(resource, resource);
        var unnamed = await SignedInAsync(resource);

        var exchanged = await ExchangeAsync(signedIn);
        var refused = await ExchangeAsync(unnamed);

        var json = await OAuth.ReadJsonAsync(exchanged);
        Assert.True(exchanged.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal([resource], Jwt.Strings(Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("aud")));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(refused)).GetProperty("error").GetString());
    }

    private Task<HttpResponseMessage> RevokeAsync(TestClient api, string token) =>
        OAuth.PostFormAsync(server, "revocation_endpoint", new Dictionary<string, string> { ["token"] = token }, api);

    private Task<HttpResponseMessage> ExchangeAsync(SignedIn signedIn) => OAuth.PostTokenAsync(server, new Dictionary<string, string>
    {
        ["grant_type"] = TokenExchange, ["subject_token"] = signedIn.AccessToken, ["subject_token_type"] = AccessTokenType, ["scope"] = signedIn.Scope,
    }, signedIn.Api);
}

public sealed class SqliteAudienceAliasTests(SqliteServerFixture server)
    : AudienceAliasTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAudienceAliasTests(PostgreSqlServerFixture server)
    : AudienceAliasTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
