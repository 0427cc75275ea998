using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// What a conformance probe found at the revocation, introspection and userinfo endpoints and in discovery: tokens are
/// revoked and read only by the client they were issued to (or their API), and the answers are the specs' own.
/// </summary>
public abstract class TokenEndpointsConformanceTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    /// <summary>An access token with no audience (openid and profile only, for userinfo) is revoked by its own client, not by another (RFC 7009 2.1).</summary>
    [SkippableFact]
    public async Task Another_client_cannot_revoke_an_access_token_that_names_no_audience()
    {
        var (owner, accessToken) = await SignedInAsync("openid profile");
        var stranger = await server.CreatePublicClientAsync("openid");

        var refused = await OAuth.RevokeAsync(server, stranger, accessToken);
        Assert.True(refused.StatusCode == HttpStatusCode.OK, await refused.Content.ReadAsStringAsync()); // RFC 7009 2.2: 200 either way
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await OAuth.RevokeAsync(server, owner, accessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);
    }

    [SkippableFact]
    public async Task Another_client_reads_an_access_token_that_names_no_audience_as_inactive()
    {
        var (_, accessToken) = await SignedInAsync("openid profile");
        var stranger = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");

        var introspected = await OAuth.IntrospectAsync(server, stranger, accessToken);

        Assert.False(introspected.GetProperty("active").GetBoolean());
        Assert.False(introspected.TryGetProperty("sub", out _));
    }

    /// <summary>RFC 7662 2.2: a token that is not an active token to introspect gets active: false, not an error.</summary>
    [SkippableFact]
    public async Task Introspecting_an_identity_token_answers_inactive()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, await server.CreateUserAsync(), "openid");
        var api = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");

        var introspected = await OAuth.IntrospectAsync(server, api, tokens.GetProperty("id_token").GetString()!);

        Assert.False(introspected.GetProperty("active").GetBoolean());
        Assert.False(introspected.TryGetProperty("error", out _));
    }

    /// <summary>OpenID Connect Core 5.3.1: userinfo takes POST; the token in the Authorization header and no body at all is such a request.</summary>
    [SkippableFact]
    public async Task Userinfo_answers_a_post_with_the_token_in_its_header_and_no_body()
    {
        var (_, accessToken) = await SignedInAsync("openid profile");
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync("userinfo_endpoint"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);

        var response = await server.CreateClient().SendAsync(request);

        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode} {response.Headers.WwwAuthenticate} {await response.Content.ReadAsStringAsync()}");
        Assert.False(string.IsNullOrEmpty((await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("sub").GetString()));
    }

    /// <summary>
    /// RFC 6750 2: the token comes one way. In the URI (which this server does not read), or in the header and the form
    /// both, the request is invalid_request; the header alone or the form alone is answered.
    /// </summary>
    [SkippableFact]
    public async Task Userinfo_refuses_a_token_in_the_uri_or_sent_two_ways()
    {
        var (_, accessToken) = await SignedInAsync("openid profile");
        var endpoint = await server.EndpointAsync("userinfo_endpoint");
        HttpRequestMessage InForm() => new(HttpMethod.Post, endpoint) { Content = new FormUrlEncodedContent([new("access_token", accessToken)]) };
        var inUri = new HttpRequestMessage(HttpMethod.Get, $"{endpoint}?access_token={Uri.EscapeDataString(accessToken)}");
        var twoWays = InForm();
        twoWays.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
        var twoWaysWithDpop = InForm();
        twoWaysWithDpop.Headers.Authorization = new AuthenticationHeaderValue("DPoP", accessToken);

        foreach (var refused in new[] { inUri, twoWays, twoWaysWithDpop })
        {
            var response = await server.CreateClient().SendAsync(refused);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{refused.Method}: {response.StatusCode} {response.Headers.WwwAuthenticate}");
            Assert.Contains("error=\"invalid_request\"", response.Headers.WwwAuthenticate.ToString());
        }

        Assert.Equal(HttpStatusCode.OK, (await server.CreateClient().SendAsync(InForm())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);
        var withAnotherScheme = InForm(); // an Authorization header that carries no access token is not a second way
        withAnotherScheme.Headers.Authorization = new AuthenticationHeaderValue("Basic", "Zm9vOmJhcg==");
        Assert.Equal(HttpStatusCode.OK, (await server.CreateClient().SendAsync(withAnotherScheme)).StatusCode);
    }

    /// <summary>Introspection is a POST (RFC 7662 2.1): a GET, which would carry the token in the URI, is refused and says nothing of it.</summary>
    [SkippableFact]
    public async Task Introspection_refuses_a_get()
    {
        var (_, accessToken) = await SignedInAsync("openid profile");
        var api = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{await server.EndpointAsync("introspection_endpoint")}?token={Uri.EscapeDataString(accessToken)}"
            + $"&client_id={Uri.EscapeDataString(api.ClientId)}&client_secret={Uri.EscapeDataString(api.ClientSecret!)}");

        var response = await server.CreateClient().SendAsync(request);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, json.ToString());
        Assert.Equal("invalid_request", json.GetProperty("error").GetString());
        Assert.False(json.TryGetProperty("active", out _), json.ToString());
    }

    /// <summary>RFC 6750 3.1: a valid token without the openid scope is not enough for userinfo: 403 insufficient_scope.</summary>
    [SkippableFact]
    public async Task Userinfo_refuses_a_token_without_openid_as_insufficient_scope()
    {
        var resource = $"https://{Unique.Name("api")}.test/";
        var apiScope = await server.CreateScopeAsync(resource);
        var machine = await server.CreateConfidentialClientAsync(c => c.Scope = apiScope);
        var token = await OAuth.ReadJsonAsync(await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["scope"] = apiScope,
        }, machine));

        var response = await OAuth.UserInfoAsync(server, token.GetProperty("access_token").GetString()!);

        Assert.True(response.StatusCode == HttpStatusCode.Forbidden, $"{response.StatusCode} {response.Headers.WwwAuthenticate} {await response.Content.ReadAsStringAsync()}");
        Assert.Contains("error=\"insufficient_scope\"", response.Headers.WwwAuthenticate.ToString());
        Assert.DoesNotContain("error_uri", response.Headers.WwwAuthenticate.ToString()); // not OpenIddict's page for its default error
    }

    /// <summary>RFC 8414 2: the signing algorithms of private_key_jwt wherever it is listed, and none where public clients authenticate.</summary>
    [SkippableFact]
    public async Task Discovery_describes_every_client_authentication_method_it_accepts()
    {
        var discovery = await server.CreateClient().GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");

        var tokenMethods = Jwt.Strings(discovery.GetProperty("token_endpoint_auth_methods_supported"));
        Assert.Contains("private_key_jwt", tokenMethods);
        Assert.Contains("none", tokenMethods);
        Assert.DoesNotContain("none", Jwt.Strings(discovery.GetProperty("introspection_endpoint_auth_methods_supported")));
        foreach (var endpoint in new[] { "token_endpoint", "revocation_endpoint", "introspection_endpoint" })
        {
            Assert.Equal(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"], Jwt.Strings(discovery.GetProperty($"{endpoint}_auth_signing_alg_values_supported")));
        }
    }

    /// <summary>A public client signed in through the code flow for <paramref name="scope"/>: the client and its access token.</summary>
    private async Task<(TestClient Client, string AccessToken)> SignedInAsync(string scope)
    {
        var client = await server.CreatePublicClientAsync(scope);
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, await server.CreateUserAsync(), scope);
        return (client, tokens.GetProperty("access_token").GetString()!);
    }
}

public sealed class SqliteTokenEndpointsConformanceTests(SqliteServerFixture server)
    : TokenEndpointsConformanceTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlTokenEndpointsConformanceTests(PostgreSqlServerFixture server)
    : TokenEndpointsConformanceTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
