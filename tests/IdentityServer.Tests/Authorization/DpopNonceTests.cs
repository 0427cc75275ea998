using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// Server-provided DPoP nonces (RFC 9449 sections 8 and 9), with <c>Dpop:RequireNonce</c> on: a proof without a current
/// nonce of this server is answered <c>use_dpop_nonce</c> with one in <c>DPoP-Nonce</c>, and the client's next proof
/// carries it. Each test runs a server of its own, on the fixture's database, whose clock it moves.
/// </summary>
public abstract class DpopNonceTests<TFixture>(TFixture fixture) where TFixture : ServerFixture
{
    private const string NonceHeader = "DPoP-Nonce";

    [SkippableFact]
    public async Task A_token_request_without_a_nonce_gets_one_and_succeeds_with_it_until_it_expires()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreateConfidentialClientAsync();
        var key = new DpopKey("ES256");

        var withoutNonce = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", issuedAt: clock.GetUtcNow()));
        await ExpectErrorAsync(withoutNonce, "use_dpop_nonce");
        var nonce = NonceOf(withoutNonce);

        var withNonce = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", nonce: nonce, issuedAt: clock.GetUtcNow()));
        var json = await OAuth.ReadJsonAsync(withNonce);
        Assert.True(withNonce.IsSuccessStatusCode, json.ToString());
        Assert.Equal("DPoP", json.GetProperty("token_type").GetString());
        Assert.Equal(key.Thumbprint, Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("cnf").GetProperty("jkt").GetString());
        Assert.NotEmpty(NonceOf(withNonce)); // a fresh one with every answer, for clients that read it there

        // A nonce serves several proofs (each used once) while it is current: Dpop:NonceLifetime, 5 minutes, and the skew.
        clock.Advance(TimeSpan.FromMinutes(5));
        var again = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", nonce: nonce, issuedAt: clock.GetUtcNow()));
        Assert.True(again.IsSuccessStatusCode, await again.Content.ReadAsStringAsync());

        clock.Advance(TimeSpan.FromMinutes(1));
        var expired = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", nonce: nonce, issuedAt: clock.GetUtcNow()));
        await ExpectErrorAsync(expired, "use_dpop_nonce", "expired");
        var next = NonceOf(expired);
        Assert.NotEqual(nonce, next);
        var withNext = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", nonce: next, issuedAt: clock.GetUtcNow()));
        Assert.True(withNext.IsSuccessStatusCode, await withNext.Content.ReadAsStringAsync());

        var forged = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", nonce: "not-a-nonce-of-ours", issuedAt: clock.GetUtcNow()));
        await ExpectErrorAsync(forged, "use_dpop_nonce");
    }

    /// <summary>
    /// The nonce check comes before the code is redeemed, so the retry oidc-client-ts makes with the nonce redeems the
    /// same code; the refresh token then refreshes with a proof carrying a nonce, and userinfo answers the access token
    /// with a fresh nonce beside the claims (an answer this server writes itself, not OpenIddict).
    /// </summary>
    [SkippableFact]
    public async Task A_code_refused_for_want_of_a_nonce_is_redeemed_by_the_retry_with_it_and_every_answer_after_gives_a_nonce()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var key = new DpopKey("ES256");
        var pkce = Pkce.Create();
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid offline_access", pkce),
            await server.CreateUserAsync());
        var redeem = new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["code"] = result["code"], ["redirect_uri"] = OAuth.AppRedirectUri,
            ["code_verifier"] = pkce.Verifier, ["client_id"] = client.ClientId,
        };

        var first = await PostAsync(server, "token_endpoint", redeem, await key.ProofAsync(server, "POST", "token_endpoint", issuedAt: clock.GetUtcNow()));
        await ExpectErrorAsync(first, "use_dpop_nonce");
        var retry = await PostAsync(server, "token_endpoint", redeem,
            await key.ProofAsync(server, "POST", "token_endpoint", nonce: NonceOf(first), issuedAt: clock.GetUtcNow()));

        var tokens = await OAuth.ReadJsonAsync(retry);
        Assert.True(retry.IsSuccessStatusCode, tokens.ToString());
        var refresh = new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["refresh_token"] = tokens.GetProperty("refresh_token").GetString()!, ["client_id"] = client.ClientId,
        };
        var refreshed = await PostAsync(server, "token_endpoint", refresh,
            await key.ProofAsync(server, "POST", "token_endpoint", nonce: NonceOf(retry), issuedAt: clock.GetUtcNow()));
        Assert.True(refreshed.IsSuccessStatusCode, await refreshed.Content.ReadAsStringAsync());

        var accessToken = (await OAuth.ReadJsonAsync(refreshed)).GetProperty("access_token").GetString()!;
        var userInfo = await UserInfoAsync(server, accessToken,
            await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken, nonce: NonceOf(refreshed), issuedAt: clock.GetUtcNow()));
        Assert.True(userInfo.IsSuccessStatusCode, await userInfo.Content.ReadAsStringAsync());
        Assert.NotEmpty(NonceOf(userInfo));
    }

    /// <summary>Userinfo answers as a resource server does (RFC 9449 section 9): 401, a DPoP challenge with use_dpop_nonce, and the nonce.</summary>
    [SkippableFact]
    public async Task Userinfo_asks_for_a_nonce_with_a_DPoP_challenge()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreateConfidentialClientAsync();
        var key = new DpopKey("ES256");
        var tokenNonce = NonceOf(await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", issuedAt: clock.GetUtcNow())));
        var issued = await ClientCredentialsAsync(server, client, await key.ProofAsync(server, "POST", "token_endpoint", nonce: tokenNonce, issuedAt: clock.GetUtcNow()));
        var accessToken = (await OAuth.ReadJsonAsync(issued)).GetProperty("access_token").GetString()!;

        var withoutNonce = await UserInfoAsync(server, accessToken, await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken, issuedAt: clock.GetUtcNow()));

        Assert.Equal(HttpStatusCode.Unauthorized, withoutNonce.StatusCode);
        Assert.StartsWith("DPoP ", withoutNonce.Headers.WwwAuthenticate.ToString());
        Assert.Contains("error=\"use_dpop_nonce\"", withoutNonce.Headers.WwwAuthenticate.ToString());
        // The token endpoint's nonces serve here too (one server), and the one given here as well.
        var withNonce = await UserInfoAsync(server, accessToken,
            await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken, nonce: NonceOf(withoutNonce), issuedAt: clock.GetUtcNow()));
        // A token without openid is answered 403 insufficient_scope: past every DPoP check.
        Assert.Equal(HttpStatusCode.Forbidden, withNonce.StatusCode);
        Assert.Contains("insufficient_scope", withNonce.Headers.WwwAuthenticate.ToString());
    }

    /// <summary>The admin API asks for a nonce as userinfo does: 401, a DPoP challenge with use_dpop_nonce and the nonce in the JSON body's error.</summary>
    [SkippableFact]
    public async Task The_admin_API_asks_for_a_nonce_with_a_DPoP_challenge()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var key = new DpopKey("ES256");
        var form = new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "admin" };
        var tokenNonce = NonceOf(await PostAsync(server, "token_endpoint", form, await key.ProofAsync(server, "POST", "token_endpoint", issuedAt: clock.GetUtcNow()), client));
        var issued = await PostAsync(server, "token_endpoint", form, await key.ProofAsync(server, "POST", "token_endpoint", nonce: tokenNonce, issuedAt: clock.GetUtcNow()), client);
        var accessToken = (await OAuth.ReadJsonAsync(issued)).GetProperty("access_token").GetString()!;
        var clients = new Uri(new Uri(await server.EndpointAsync("issuer")), "api/admin/clients").AbsoluteUri;

        var withoutNonce = await AdminApiAsync(server, clients, accessToken, key.Proof("GET", clients, payload: p =>
        {
            p["ath"] = IdentityServer.Dpop.DpopProofReader.AccessTokenHash(accessToken);
            p["iat"] = clock.GetUtcNow().ToUnixTimeSeconds();
        }));

        Assert.Equal(HttpStatusCode.Unauthorized, withoutNonce.StatusCode);
        Assert.StartsWith("DPoP ", withoutNonce.Headers.WwwAuthenticate.ToString());
        Assert.Contains("error=\"use_dpop_nonce\"", withoutNonce.Headers.WwwAuthenticate.ToString());
        Assert.Equal("use_dpop_nonce", (await OAuth.ReadJsonAsync(withoutNonce)).GetProperty("error").GetString());
        var withNonce = await AdminApiAsync(server, clients, accessToken, key.Proof("GET", clients, payload: p =>
        {
            p["ath"] = IdentityServer.Dpop.DpopProofReader.AccessTokenHash(accessToken);
            p["iat"] = clock.GetUtcNow().ToUnixTimeSeconds();
            p["nonce"] = NonceOf(withoutNonce);
        }));
        Assert.Equal(HttpStatusCode.OK, withNonce.StatusCode);
        Assert.NotEmpty(NonceOf(withNonce)); // a fresh one with every answer to a request with a proof
    }

    /// <summary>
    /// Nothing changes for a client that does not use DPoP; one required to (dpop_bound_access_tokens) is given a nonce
    /// with the refusal of a request without a proof, and so is a pushed request's proof without one.
    /// </summary>
    [SkippableFact]
    public async Task Only_requests_with_proofs_or_refused_for_want_of_one_are_given_nonces()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var server = new AttachedServer(factory, fixture.Provider);
        var bearer = await server.CreateConfidentialClientAsync();
        var required = await server.CreateConfidentialClientAsync(c => c.DpopBoundAccessTokens = true);
        var pushing = await server.CreatePublicClientAsync("openid");
        var key = new DpopKey("ES256");

        var plain = await ClientCredentialsAsync(server, bearer, proof: null);
        var refused = await ClientCredentialsAsync(server, required, proof: null);
        var pkce = Pkce.Create();
        var pushRequest = new Dictionary<string, string>
        {
            ["client_id"] = pushing.ClientId, ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = "openid",
            ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
        };
        var pushed = await PostAsync(server, "pushed_authorization_request_endpoint", pushRequest,
            await key.ProofAsync(server, "POST", "pushed_authorization_request_endpoint", issuedAt: clock.GetUtcNow()));

        Assert.True(plain.IsSuccessStatusCode, await plain.Content.ReadAsStringAsync());
        Assert.Equal("Bearer", (await OAuth.ReadJsonAsync(plain)).GetProperty("token_type").GetString());
        Assert.False(plain.Headers.Contains(NonceHeader));
        await ExpectErrorAsync(refused, "invalid_dpop_proof");
        Assert.NotEmpty(NonceOf(refused));
        await ExpectErrorAsync(pushed, "use_dpop_nonce");
        var pushedAgain = await PostAsync(server, "pushed_authorization_request_endpoint", pushRequest,
            await key.ProofAsync(server, "POST", "pushed_authorization_request_endpoint", nonce: NonceOf(pushed), issuedAt: clock.GetUtcNow()));
        Assert.True(pushedAgain.StatusCode == HttpStatusCode.Created, await pushedAgain.Content.ReadAsStringAsync());
        Assert.NotEmpty(NonceOf(pushedAgain));
    }

    /// <summary>A browser app reads the nonce from a cross-origin answer only if CORS exposes the header.</summary>
    [SkippableFact]
    public async Task A_browser_app_on_another_origin_may_read_the_nonce()
    {
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = StartWithClock(clock);
        var server = new AttachedServer(factory, fixture.Provider);
        var client = await server.CreatePublicClientAsync("openid");
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync("token_endpoint"))
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "authorization_code", ["client_id"] = client.ClientId }),
        };
        request.Headers.Add("Origin", new Uri(OAuth.AppRedirectUri).GetLeftPart(UriPartial.Authority));
        request.Headers.Add("DPoP", await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint", issuedAt: clock.GetUtcNow()));

        var response = await server.CreateClient().SendAsync(request);

        await ExpectErrorAsync(response, "use_dpop_nonce");
        Assert.Contains(NonceHeader, response.Headers.GetValues("Access-Control-Expose-Headers").SelectMany(v => v.Split(',')).Select(v => v.Trim()),
            StringComparer.OrdinalIgnoreCase);
    }

    private TestServerFactory StartWithClock(TestClock clock)
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var settings = new Dictionary<string, string?>(fixture.Settings) { ["Dpop:RequireNonce"] = "true" };
        return new TestServerFactory(settings, testServices: services => services.AddSingleton<TimeProvider>(clock));
    }

    private static string NonceOf(HttpResponseMessage response)
    {
        Assert.True(response.Headers.TryGetValues(NonceHeader, out var values), $"No {NonceHeader} header in the {(int)response.StatusCode} answer");
        var nonce = Assert.Single(values);
        Assert.Matches("^[A-Za-z0-9_-]+$", nonce); // NQCHAR, and safe in a JWT string
        return nonce;
    }

    private static async Task<HttpResponseMessage> ClientCredentialsAsync(ServerFixture server, TestClient client, string? proof) =>
        await PostAsync(server, "token_endpoint", new Dictionary<string, string> { ["grant_type"] = "client_credentials" }, proof, client);

    private static Task<HttpResponseMessage> PostAsync(ServerFixture server, string endpoint, Dictionary<string, string> form, string? proof,
        TestClient? basicAuth = null) => DpopKey.PostAsync(server, endpoint, form, proof, basicAuth);

    private static async Task<HttpResponseMessage> UserInfoAsync(ServerFixture server, string accessToken, string proof)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, await server.EndpointAsync("userinfo_endpoint"));
        request.Headers.Authorization = new AuthenticationHeaderValue("DPoP", accessToken);
        request.Headers.Add("DPoP", proof);
        return await server.CreateClient().SendAsync(request);
    }

    private static async Task<HttpResponseMessage> AdminApiAsync(ServerFixture server, string url, string accessToken, string proof)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Authorization = new AuthenticationHeaderValue("DPoP", accessToken);
        request.Headers.Add("DPoP", proof);
        return await server.CreateClient().SendAsync(request);
    }

    private static async Task ExpectErrorAsync(HttpResponseMessage response, string error, string? descriptionContains = null)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {body}");
        var json = JsonDocument.Parse(body).RootElement;
        Assert.Equal(error, json.GetProperty("error").GetString());
        if (descriptionContains is not null)
        {
            Assert.Contains(descriptionContains, json.GetProperty("error_description").GetString());
        }
    }
}

public sealed class SqliteDpopNonceTests(SqliteServerFixture fixture) : DpopNonceTests<SqliteServerFixture>(fixture), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlDpopNonceTests(PostgreSqlServerFixture fixture) : DpopNonceTests<PostgreSqlServerFixture>(fixture), IClassFixture<PostgreSqlServerFixture>;
