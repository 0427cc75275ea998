using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// DPoP (RFC 9449): a token request with a proof gets access tokens bound to the proof's key (<c>cnf.jkt</c>, token_type
/// DPoP), a public client's refresh token too; a bound token is accepted only with a proof by that key. A code can be
/// bound at authorize (<c>dpop_jkt</c>) or at PAR (a proof). Proofs that fail a check are <c>invalid_dpop_proof</c>.
/// </summary>
public abstract class DpopTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableTheory]
    [InlineData("ES256")]
    [InlineData("ES384")]
    [InlineData("PS256")]
    [InlineData("RS256")]
    public async Task A_client_credentials_request_with_a_proof_gets_an_access_token_bound_to_its_key(string algorithm)
    {
        var client = await server.CreateConfidentialClientAsync();
        var key = new DpopKey(algorithm);

        var response = await ClientCredentialsAsync(client, await key.ProofAsync(server, "POST", "token_endpoint"));

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        Assert.Equal("DPoP", json.GetProperty("token_type").GetString());
        var accessToken = json.GetProperty("access_token").GetString()!;
        Assert.Equal(key.Thumbprint, Jwt.Payload(accessToken).GetProperty("cnf").GetProperty("jkt").GetString());

        // Introspection tells the binding (RFC 9449 section 6.2).
        var introspection = await OAuth.IntrospectAsync(server, client, accessToken);
        Assert.True(introspection.GetProperty("active").GetBoolean(), introspection.ToString());
        Assert.Equal("DPoP", introspection.GetProperty("token_type").GetString());
        Assert.Equal(key.Thumbprint, introspection.GetProperty("cnf").GetProperty("jkt").GetString());
    }

    [SkippableFact]
    public async Task Without_a_proof_the_access_token_is_a_bearer_token_with_no_binding()
    {
        var client = await server.CreateConfidentialClientAsync();

        var json = await OAuth.ReadJsonAsync(await ClientCredentialsAsync(client, proof: null));

        Assert.Equal("Bearer", json.GetProperty("token_type").GetString());
        Assert.False(Jwt.Payload(json.GetProperty("access_token").GetString()!).TryGetProperty("cnf", out _));
    }

    [SkippableFact]
    public async Task Discovery_lists_the_proof_algorithms()
    {
        var discovery = await server.CreateClient().GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");

        Assert.Equal(["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"],
            Jwt.Strings(discovery.GetProperty("dpop_signing_alg_values_supported")));
    }

    public static TheoryData<string> BrokenProofs() =>
    [
        "typ other than dpop+jwt", "alg none", "alg HS256", "no jwk", "a private key in jwk", "signed by another key", "crit in the header",
        "htm GET", "htu of another endpoint", "iat five minutes old", "iat five minutes ahead", "no iat", "no jti",
        "not a JWT", "an RSA key of 1024 bits", "an EC key on another curve",
        "a lone surrogate in typ", "a lone surrogate as a member name", "invalid UTF-8 in jti", "a nonce that is not a string",
    ];

    [SkippableTheory]
    [MemberData(nameof(BrokenProofs))]
    public async Task A_proof_failing_a_check_is_refused_with_invalid_dpop_proof(string broken)
    {
        var client = await server.CreateConfidentialClientAsync();
        var key = new DpopKey(broken == "an RSA key of 1024 bits" ? "RS256-1024" : "ES256");
        var other = new DpopKey("ES256");
        var tokenEndpoint = await server.EndpointAsync("token_endpoint");
        var proof = broken switch
        {
            "typ other than dpop+jwt" => key.Proof("POST", tokenEndpoint, header: h => h["typ"] = "JWT"),
            "alg none" => Unsigned(key.Proof("POST", tokenEndpoint, header: h => h["alg"] = "none")),
            "alg HS256" => key.Proof("POST", tokenEndpoint, header: h => h["alg"] = "HS256"),
            "no jwk" => key.Proof("POST", tokenEndpoint, header: h => h.Remove("jwk")),
            "a private key in jwk" => key.Proof("POST", tokenEndpoint, header: h => ((Dictionary<string, object>)h["jwk"])["d"] = key.PrivateD()),
            "signed by another key" => key.Proof("POST", tokenEndpoint, header: h => h["jwk"] = other.PublicJwk()),
            "crit in the header" => key.Proof("POST", tokenEndpoint, header: h => h["crit"] = new[] { "exp" }),
            "htm GET" => key.Proof("GET", tokenEndpoint),
            "htu of another endpoint" => key.Proof("POST", await server.EndpointAsync("userinfo_endpoint")),
            "iat five minutes old" => key.Proof("POST", tokenEndpoint, payload: p => p["iat"] = DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds()),
            "iat five minutes ahead" => key.Proof("POST", tokenEndpoint, payload: p => p["iat"] = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds()),
            "no iat" => key.Proof("POST", tokenEndpoint, payload: p => p.Remove("iat")),
            "no jti" => key.Proof("POST", tokenEndpoint, payload: p => p.Remove("jti")),
            "a nonce that is not a string" => key.Proof("POST", tokenEndpoint, payload: p => p["nonce"] = 42),
            "not a JWT" => "not-a-jwt",
            "an RSA key of 1024 bits" => key.Proof("POST", tokenEndpoint),
            "an EC key on another curve" => key.Proof("POST", tokenEndpoint, header: h => h["alg"] = "ES384"),
            // Text System.Text.Json parses but will not read back as a string (it once made a 500).
            "a lone surrogate in typ" => key.Sign(Encoding.UTF8.GetBytes($$"""{"typ":"\ud800","alg":"ES256","jwk":{{JsonSerializer.Serialize(key.PublicJwk())}}}"""),
                JsonSerializer.SerializeToUtf8Bytes(key.Claims("POST", tokenEndpoint))),
            "a lone surrogate as a member name" => key.Sign(Encoding.UTF8.GetBytes($$"""{"\udc00":1,"typ":"dpop+jwt","alg":"ES256","jwk":{{JsonSerializer.Serialize(key.PublicJwk())}}}"""),
                JsonSerializer.SerializeToUtf8Bytes(key.Claims("POST", tokenEndpoint))),
            "invalid UTF-8 in jti" => key.Sign(key.Header(),
                [.. Encoding.UTF8.GetBytes($$"""{"htm":"POST","htu":"{{tokenEndpoint}}","iat":{{DateTimeOffset.UtcNow.ToUnixTimeSeconds()}},"jti":"a"""), 0xC3, .. "\"}"u8]),
            _ => throw new ArgumentOutOfRangeException(nameof(broken)),
        };

        await ExpectErrorAsync(await ClientCredentialsAsync(client, proof), HttpStatusCode.BadRequest, "invalid_dpop_proof");
    }

    [SkippableFact]
    public async Task Two_DPoP_headers_are_refused()
    {
        var client = await server.CreateConfidentialClientAsync();
        var key = new DpopKey("ES256");

        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync("token_endpoint"))
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials" }),
        };
        request.Headers.Authorization = OAuth.BasicAuth(client);
        request.Headers.Add("DPoP", [await key.ProofAsync(server, "POST", "token_endpoint"), await key.ProofAsync(server, "POST", "token_endpoint")]);

        await ExpectErrorAsync(await server.CreateClient().SendAsync(request), HttpStatusCode.BadRequest, "invalid_dpop_proof");
    }

    /// <summary>
    /// What the specifications allow a proof to vary: the query of the endpoint's URL is no part of what it names (RFC
    /// 9449 section 4.3), a typ may be written out as a media type (RFC 7515 section 4.1.9), iat may have a fraction (RFC
    /// 7519 section 2), and the path's case does not matter to the endpoint.
    /// </summary>
    [SkippableTheory]
    [InlineData("htu with a query")]
    [InlineData("typ application/dpop+jwt")]
    [InlineData("iat with a fraction")]
    [InlineData("htu path in capitals")]
    public async Task A_proof_varying_as_the_specifications_allow_is_accepted(string variant)
    {
        var client = await server.CreateConfidentialClientAsync();
        var key = new DpopKey("ES256");
        var tokenEndpoint = await server.EndpointAsync("token_endpoint");
        var proof = variant switch
        {
            "htu with a query" => key.Proof("POST", tokenEndpoint + "?ignored=1"),
            "typ application/dpop+jwt" => key.Proof("POST", tokenEndpoint, header: h => h["typ"] = "application/dpop+jwt"),
            "iat with a fraction" => key.Proof("POST", tokenEndpoint, payload: p => p["iat"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0),
            "htu path in capitals" => key.Proof("POST", tokenEndpoint.Replace("/connect/token", "/CONNECT/Token", StringComparison.Ordinal)),
            _ => throw new ArgumentOutOfRangeException(nameof(variant)),
        };

        var response = await ClientCredentialsAsync(client, proof);

        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// With a configured issuer (a proxy in front), a proof must name the endpoint under the issuer, as discovery gives
    /// it. The request's own address is not enough: its host is the Host header the sender chose, so a proof made for
    /// another server's token endpoint passed with that server's name in the header.
    /// </summary>
    [SkippableFact]
    public async Task With_a_configured_issuer_a_proof_must_name_the_endpoint_under_it_whatever_host_the_request_names()
    {
        var client = await server.CreateConfidentialClientAsync();
        await using var proxied = server.StartServer(new Dictionary<string, string?> { ["Tokens:Issuer"] = "https://id.example.test/" });
        var http = proxied.CreateClient();
        async Task<HttpResponseMessage> PostWithProofAsync(string requestUrl, string proofUrl)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, requestUrl)
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials" }),
            };
            request.Headers.Authorization = OAuth.BasicAuth(client);
            request.Headers.Add("DPoP", new DpopKey("ES256").Proof("POST", proofUrl));
            return await http.SendAsync(request);
        }

        var named = await PostWithProofAsync("https://localhost/connect/token", "https://id.example.test/connect/token");
        Assert.True(named.IsSuccessStatusCode, await named.Content.ReadAsStringAsync());

        await ExpectErrorAsync(await PostWithProofAsync("https://other.example.test/connect/token", "https://other.example.test/connect/token"),
            HttpStatusCode.BadRequest, "invalid_dpop_proof");
    }

    [SkippableFact]
    public async Task A_proof_is_used_once()
    {
        var client = await server.CreateConfidentialClientAsync();
        var proof = await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint");

        Assert.True((await ClientCredentialsAsync(client, proof)).IsSuccessStatusCode);

        await ExpectErrorAsync(await ClientCredentialsAsync(client, proof), HttpStatusCode.BadRequest, "invalid_dpop_proof", "already used");
    }

    [SkippableFact]
    public async Task A_client_registered_with_dpop_bound_access_tokens_must_send_a_proof()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.DpopBoundAccessTokens = true);

        await ExpectErrorAsync(await ClientCredentialsAsync(client, proof: null), HttpStatusCode.BadRequest, "invalid_dpop_proof");

        var bound = await ClientCredentialsAsync(client, await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint"));
        Assert.Equal("DPoP", (await OAuth.ReadJsonAsync(bound)).GetProperty("token_type").GetString());
    }

    /// <summary>
    /// A public client's refresh token is bound to the key of the proof it was issued with (RFC 9449 section 5): it is
    /// refused without a proof or with another key's, and refreshes with that key's, into tokens bound again.
    /// </summary>
    [SkippableFact]
    public async Task A_public_clients_refresh_token_is_bound_to_the_key_it_was_issued_with()
    {
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var key = new DpopKey("ES256");
        var tokens = await SignInAndRedeemAsync(client, await key.ProofAsync(server, "POST", "token_endpoint"));
        Assert.Equal("DPoP", tokens.GetProperty("token_type").GetString());
        var refreshToken = tokens.GetProperty("refresh_token").GetString()!;

        await ExpectErrorAsync(await RefreshAsync(client, refreshToken, proof: null), HttpStatusCode.BadRequest, "invalid_grant", "DPoP");
        await ExpectErrorAsync(await RefreshAsync(client, refreshToken, await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint")),
            HttpStatusCode.BadRequest, "invalid_grant", "another key");

        var refreshed = await RefreshAsync(client, refreshToken, await key.ProofAsync(server, "POST", "token_endpoint"));
        var json = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.IsSuccessStatusCode, json.ToString());
        Assert.Equal("DPoP", json.GetProperty("token_type").GetString());
        Assert.Equal(key.Thumbprint, Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("cnf").GetProperty("jkt").GetString());
        await ExpectErrorAsync(await RefreshAsync(client, json.GetProperty("refresh_token").GetString()!, proof: null),
            HttpStatusCode.BadRequest, "invalid_grant", "DPoP");
    }

    /// <summary>A confidential client's refresh token stays unbound: its client authentication holds it already (RFC 9449 section 5).</summary>
    [SkippableFact]
    public async Task A_confidential_clients_refresh_token_is_not_bound()
    {
        var client = await server.CreateConfidentialClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "client_secret_basic";
            c.GrantTypes = ["authorization_code", "refresh_token"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid offline_access";
            c.ConsentType = "implicit";
        });
        var tokens = await SignInAndRedeemAsync(client, await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint"));
        Assert.Equal("DPoP", tokens.GetProperty("token_type").GetString());

        var refreshed = await RefreshAsync(client, tokens.GetProperty("refresh_token").GetString()!, proof: null);

        var json = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.IsSuccessStatusCode, json.ToString());
        Assert.Equal("Bearer", json.GetProperty("token_type").GetString());
    }

    /// <summary><c>dpop_jkt</c> at authorize binds the code (RFC 9449 section 10): only a proof by that key redeems it.</summary>
    [SkippableFact]
    public async Task A_code_asked_for_with_dpop_jkt_is_redeemed_only_with_a_proof_by_that_key()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var key = new DpopKey("ES256");
        var pkce = Pkce.Create();
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(),
            await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce, extra: new Dictionary<string, string?> { ["dpop_jkt"] = key.Thumbprint }),
            await server.CreateUserAsync());
        var code = result["code"];

        await ExpectErrorAsync(await RedeemAsync(client, code, pkce, proof: null), HttpStatusCode.BadRequest, "invalid_grant", "DPoP");
        await ExpectErrorAsync(await RedeemAsync(client, code, pkce, await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint")),
            HttpStatusCode.BadRequest, "invalid_grant", "another key");

        var redeemed = await RedeemAsync(client, code, pkce, await key.ProofAsync(server, "POST", "token_endpoint"));
        Assert.True(redeemed.IsSuccessStatusCode, await redeemed.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task A_dpop_jkt_that_is_not_a_thumbprint_is_refused_with_invalid_request()
    {
        var client = await server.CreatePublicClientAsync("openid");

        var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["dpop_jkt"] = "not-a-thumbprint" }), OAuth.IsApp);

        Assert.NotNull(page.RedirectTarget);
        Assert.Equal("invalid_request", OAuth.QueryOf(page.RedirectTarget!)["error"]);
    }

    /// <summary>A proof sent with a pushed request binds the code as <c>dpop_jkt</c> would (RFC 9449 section 10.1).</summary>
    [SkippableFact]
    public async Task A_proof_at_the_pushed_authorization_endpoint_binds_the_code_to_its_key()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var key = new DpopKey("ES256");
        var pkce = Pkce.Create();
        var pushed = await PushAsync(client, pkce, await key.ProofAsync(server, "POST", "pushed_authorization_request_endpoint"));
        var requestUri = (await OAuth.ReadJsonAsync(pushed)).GetProperty("request_uri").GetString()!;
        var authorizeUrl = Microsoft.AspNetCore.WebUtilities.QueryHelpers.AddQueryString(await server.EndpointAsync("authorization_endpoint"),
            new Dictionary<string, string?> { ["client_id"] = client.ClientId, ["request_uri"] = requestUri });
        var code = (await OAuth.AuthorizeAsync(server.CreateBrowser(), authorizeUrl, await server.CreateUserAsync()))["code"];

        await ExpectErrorAsync(await RedeemAsync(client, code, pkce, await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint")),
            HttpStatusCode.BadRequest, "invalid_grant", "another key");
        var redeemed = await RedeemAsync(client, code, pkce, await key.ProofAsync(server, "POST", "token_endpoint"));
        Assert.True(redeemed.IsSuccessStatusCode, await redeemed.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task A_pushed_request_whose_dpop_jkt_is_not_its_proofs_key_is_refused()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var key = new DpopKey("ES256");

        var pushed = await PushAsync(client, Pkce.Create(), await key.ProofAsync(server, "POST", "pushed_authorization_request_endpoint"),
            dpopJkt: new DpopKey("ES256").Thumbprint);

        await ExpectErrorAsync(pushed, HttpStatusCode.BadRequest, "invalid_dpop_proof");
    }

    /// <summary>Userinfo is a resource of this server: a bound token comes with the DPoP scheme and a proof for it (RFC 9449 section 7).</summary>
    [SkippableFact]
    public async Task Userinfo_accepts_a_bound_token_with_the_DPoP_scheme_and_a_proof_of_its_key_only()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var key = new DpopKey("ES256");
        var accessToken = (await SignInAndRedeemAsync(client, await key.ProofAsync(server, "POST", "token_endpoint"))).GetProperty("access_token").GetString()!;

        var ok = await UserInfoAsync("DPoP", accessToken, await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken));
        Assert.True(ok.IsSuccessStatusCode, await ok.Content.ReadAsStringAsync());

        var asBearer = await UserInfoAsync("Bearer", accessToken, proof: null);
        Assert.Equal(HttpStatusCode.Unauthorized, asBearer.StatusCode);
        Assert.StartsWith("DPoP", asBearer.Headers.WwwAuthenticate.ToString());
        Assert.Contains("error=\"invalid_token\"", asBearer.Headers.WwwAuthenticate.ToString());

        var otherKey = await UserInfoAsync("DPoP", accessToken, await new DpopKey("ES256").ProofAsync(server, "GET", "userinfo_endpoint", accessToken));
        Assert.Equal(HttpStatusCode.Unauthorized, otherKey.StatusCode);
        Assert.StartsWith("DPoP", otherKey.Headers.WwwAuthenticate.ToString());
        Assert.Contains("error=\"invalid_token\"", otherKey.Headers.WwwAuthenticate.ToString());

        var noProof = await UserInfoAsync("DPoP", accessToken, proof: null);
        Assert.Equal(HttpStatusCode.Unauthorized, noProof.StatusCode);
        Assert.Contains("error=\"invalid_dpop_proof\"", noProof.Headers.WwwAuthenticate.ToString());
        Assert.Contains("algs=\"ES256", noProof.Headers.WwwAuthenticate.ToString());

        var wrongHash = await UserInfoAsync("DPoP", accessToken, await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken + "x"));
        Assert.Equal(HttpStatusCode.Unauthorized, wrongHash.StatusCode);
        Assert.Contains("error=\"invalid_dpop_proof\"", wrongHash.Headers.WwwAuthenticate.ToString());

        var proof = await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken);
        Assert.True((await UserInfoAsync("DPoP", accessToken, proof)).IsSuccessStatusCode);
        var replayed = await UserInfoAsync("DPoP", accessToken, proof);
        Assert.Equal(HttpStatusCode.Unauthorized, replayed.StatusCode);
        Assert.Contains("error=\"invalid_dpop_proof\"", replayed.Headers.WwwAuthenticate.ToString());
    }

    [SkippableFact]
    public async Task Userinfo_refuses_an_unbound_token_sent_with_the_DPoP_scheme()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var key = new DpopKey("ES256");
        var accessToken = (await SignInAndRedeemAsync(client, proof: null)).GetProperty("access_token").GetString()!;

        var response = await UserInfoAsync("DPoP", accessToken, await key.ProofAsync(server, "GET", "userinfo_endpoint", accessToken));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("error=\"invalid_token\"", response.Headers.WwwAuthenticate.ToString());
        Assert.True((await OAuth.UserInfoAsync(server, accessToken)).IsSuccessStatusCode);
    }

    /// <summary>
    /// An API trades the bound token it received (RFC 8693) without the app's key, which it cannot hold; what it gets is
    /// bound to its own key if it sends a proof.
    /// </summary>
    [SkippableFact]
    public async Task An_api_exchanges_a_bound_token_it_received_and_its_own_proof_binds_the_new_one()
    {
        var apiId = Unique.Name("api");
        var scope = await server.CreateScopeAsync(apiId);
        var api = await server.CreateConfidentialClientAsync(c =>
        {
            c.ClientId = apiId;
            c.GrantTypes = ["urn:ietf:params:oauth:grant-type:token-exchange"];
            c.Scope = scope;
        });
        var app = await server.CreatePublicClientAsync($"openid {scope}");
        var accessToken = (await SignInAndRedeemAsync(app, await new DpopKey("ES256").ProofAsync(server, "POST", "token_endpoint")))
            .GetProperty("access_token").GetString()!;

        var unbound = await PostAsync("token_endpoint", Exchange(accessToken, scope), proof: null, api);
        var unboundJson = await OAuth.ReadJsonAsync(unbound);
        Assert.True(unbound.IsSuccessStatusCode, unboundJson.ToString());
        Assert.Equal("Bearer", unboundJson.GetProperty("token_type").GetString());

        var apiKey = new DpopKey("ES256");
        var bound = await PostAsync("token_endpoint", Exchange(accessToken, scope), await apiKey.ProofAsync(server, "POST", "token_endpoint"), api);
        var boundJson = await OAuth.ReadJsonAsync(bound);
        Assert.True(bound.IsSuccessStatusCode, boundJson.ToString());
        Assert.Equal("DPoP", boundJson.GetProperty("token_type").GetString());
        Assert.Equal(apiKey.Thumbprint, Jwt.Payload(boundJson.GetProperty("access_token").GetString()!).GetProperty("cnf").GetProperty("jkt").GetString());
    }

    /// <summary>A client exchanging its own bound token proves its key, as it would to refresh: no way to a bearer token without it.</summary>
    [SkippableFact]
    public async Task A_client_exchanging_its_own_bound_token_must_prove_its_key()
    {
        var scope = await server.CreateScopeAsync(Unique.Name("api"));
        var app = await server.CreateConfidentialClientAsync(c =>
        {
            c.GrantTypes = ["authorization_code", "urn:ietf:params:oauth:grant-type:token-exchange"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = $"openid {scope}";
            c.ConsentType = "implicit";
        });
        var key = new DpopKey("ES256");
        var accessToken = (await SignInAndRedeemAsync(app, await key.ProofAsync(server, "POST", "token_endpoint"))).GetProperty("access_token").GetString()!;

        await ExpectErrorAsync(await PostAsync("token_endpoint", Exchange(accessToken, scope), proof: null, app), HttpStatusCode.BadRequest, "invalid_request", "DPoP");

        var exchanged = await PostAsync("token_endpoint", Exchange(accessToken, scope), await key.ProofAsync(server, "POST", "token_endpoint"), app);
        Assert.True(exchanged.IsSuccessStatusCode, await exchanged.Content.ReadAsStringAsync());
    }

    /// <summary>Only the tokens this server binds are held to a key: a client assertion's own cnf is not a binding of ours.</summary>
    [SkippableFact]
    public async Task A_client_assertion_carrying_a_cnf_authenticates_as_any_other()
    {
        var client = await IdentityServer.Tests.Clients.SigningClient.CreateAsync(server);
        var assertion = await client.AssertionAsync(payload: p => p["cnf"] = new Dictionary<string, string> { ["jkt"] = new DpopKey("ES256").Thumbprint });

        var response = await PostAsync("token_endpoint", new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["client_id"] = client.ClientId,
            ["client_assertion_type"] = IdentityServer.Tests.Clients.SigningClient.AssertionType, ["client_assertion"] = assertion,
        }, proof: null, basicAuth: null);

        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    private static Dictionary<string, string> Exchange(string subjectToken, string scope) => new()
    {
        ["grant_type"] = "urn:ietf:params:oauth:grant-type:token-exchange", ["subject_token"] = subjectToken,
        ["subject_token_type"] = "urn:ietf:params:oauth:token-type:access_token", ["scope"] = scope,
    };

    private async Task<HttpResponseMessage> ClientCredentialsAsync(TestClient client, string? proof) =>
        await PostAsync("token_endpoint", new Dictionary<string, string> { ["grant_type"] = "client_credentials" }, proof, client);

    private async Task<HttpResponseMessage> RefreshAsync(TestClient client, string refreshToken, string? proof) =>
        await PostAsync("token_endpoint", ClientForm(client, new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refreshToken }),
            proof, client.ClientSecret is null ? null : client);

    private async Task<HttpResponseMessage> RedeemAsync(TestClient client, string code, Pkce pkce, string? proof) =>
        await PostAsync("token_endpoint", ClientForm(client, new()
        {
            ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = pkce.Verifier,
        }), proof, client.ClientSecret is null ? null : client);

    private async Task<JsonElement> SignInAndRedeemAsync(TestClient client, string? proof)
    {
        var pkce = Pkce.Create();
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(),
            await OAuth.AuthorizeUrlAsync(server, client.ClientId, client.Document.Scope!, pkce), await server.CreateUserAsync());
        var response = await RedeemAsync(client, result["code"], pkce, proof);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }

    private async Task<HttpResponseMessage> PushAsync(TestClient client, Pkce pkce, string proof, string? dpopJkt = null)
    {
        var form = new Dictionary<string, string>
        {
            ["client_id"] = client.ClientId, ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = "openid",
            ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
        };
        if (dpopJkt is not null)
        {
            form["dpop_jkt"] = dpopJkt;
        }

        return await PostAsync("pushed_authorization_request_endpoint", form, proof, basicAuth: null);
    }

    /// <summary>A public client names itself in the form; a confidential one authenticates with HTTP Basic.</summary>
    private static Dictionary<string, string> ClientForm(TestClient client, Dictionary<string, string> form)
    {
        if (client.ClientSecret is null)
        {
            form["client_id"] = client.ClientId;
        }

        return form;
    }

    private Task<HttpResponseMessage> PostAsync(string endpoint, Dictionary<string, string> form, string? proof, TestClient? basicAuth) =>
        DpopKey.PostAsync(server, endpoint, form, proof, basicAuth);

    private async Task<HttpResponseMessage> UserInfoAsync(string scheme, string accessToken, string? proof)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, await server.EndpointAsync("userinfo_endpoint"));
        request.Headers.Authorization = new AuthenticationHeaderValue(scheme, accessToken);
        if (proof is not null)
        {
            request.Headers.Add("DPoP", proof);
        }

        return await server.CreateClient().SendAsync(request);
    }

    private static async Task ExpectErrorAsync(HttpResponseMessage response, HttpStatusCode status, string error, string? descriptionContains = null)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{(int)response.StatusCode}: {body}");
        var json = JsonDocument.Parse(body).RootElement;
        Assert.Equal(error, json.GetProperty("error").GetString());
        if (descriptionContains is not null)
        {
            Assert.Contains(descriptionContains, json.GetProperty("error_description").GetString());
        }
    }

    /// <summary>The proof with its signature left out, as an <c>alg: none</c> JWT is.</summary>
    private static string Unsigned(string proof) => proof[..(proof.LastIndexOf('.') + 1)];
}

/// <summary>A client's DPoP key: makes proofs as RFC 9449 section 4.2 describes, and knows its thumbprint (RFC 7638).</summary>
public sealed class DpopKey
{
    private readonly ECDsa? _ec;
    private readonly RSA? _rsa;
    private readonly string _algorithm;

    /// <param name="algorithm">ES256, ES384, PS256, RS256, or RS256-1024 for an RSA key too short to be accepted.</param>
    public DpopKey(string algorithm)
    {
        _algorithm = algorithm.Split('-')[0];
        if (_algorithm.StartsWith("ES", StringComparison.Ordinal))
        {
            _ec = ECDsa.Create(_algorithm == "ES384" ? ECCurve.NamedCurves.nistP384 : ECCurve.NamedCurves.nistP256);
        }
        else
        {
            _rsa = RSA.Create(algorithm.EndsWith("-1024", StringComparison.Ordinal) ? 1024 : 2048);
        }
    }

    public string Thumbprint
    {
        get
        {
            var jwk = PublicJwk();
            var canonical = _ec is not null
                ? $"{{\"crv\":\"{jwk["crv"]}\",\"kty\":\"EC\",\"x\":\"{jwk["x"]}\",\"y\":\"{jwk["y"]}\"}}"
                : $"{{\"e\":\"{jwk["e"]}\",\"kty\":\"RSA\",\"n\":\"{jwk["n"]}\"}}";
            return Base64UrlEncoder.Encode(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)));
        }
    }

    public Dictionary<string, object> PublicJwk()
    {
        if (_ec is not null)
        {
            var parameters = _ec.ExportParameters(false);
            return new()
            {
                ["kty"] = "EC", ["crv"] = _algorithm == "ES384" ? "P-384" : "P-256",
                ["x"] = Base64UrlEncoder.Encode(parameters.Q.X!), ["y"] = Base64UrlEncoder.Encode(parameters.Q.Y!),
            };
        }

        var rsa = _rsa!.ExportParameters(false);
        return new() { ["kty"] = "RSA", ["n"] = Base64UrlEncoder.Encode(rsa.Modulus!), ["e"] = Base64UrlEncoder.Encode(rsa.Exponent!) };
    }

    /// <summary>The private part of the key, to put where a proof must not have it.</summary>
    public string PrivateD() => Base64UrlEncoder.Encode(_ec is not null ? _ec.ExportParameters(true).D! : _rsa!.ExportParameters(true).D!);

    /// <summary>
    /// A proof for <paramref name="method"/> to the endpoint discovery names <paramref name="endpoint"/>, with an access
    /// token's hash, a server's nonce and an issue time other than now if given.
    /// </summary>
    public async Task<string> ProofAsync(ServerFixture server, string method, string endpoint, string? accessToken = null, string? nonce = null,
        DateTimeOffset? issuedAt = null) =>
        Proof(method, await server.EndpointAsync(endpoint), payload: p =>
        {
            if (accessToken is not null)
            {
                p["ath"] = Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(accessToken)));
            }

            if (nonce is not null)
            {
                p["nonce"] = nonce;
            }

            if (issuedAt is not null)
            {
                p["iat"] = issuedAt.Value.ToUnixTimeSeconds();
            }
        });

    /// <summary>A proof for <paramref name="method"/> to <paramref name="url"/>, after <paramref name="header"/> and <paramref name="payload"/> changed what they like.</summary>
    public string Proof(string method, string url, Action<Dictionary<string, object>>? header = null, Action<Dictionary<string, object>>? payload = null)
    {
        var headerMembers = new Dictionary<string, object> { ["typ"] = "dpop+jwt", ["alg"] = _algorithm, ["jwk"] = PublicJwk() };
        var claims = Claims(method, url);
        header?.Invoke(headerMembers);
        payload?.Invoke(claims);
        return Sign(JsonSerializer.SerializeToUtf8Bytes(headerMembers), JsonSerializer.SerializeToUtf8Bytes(claims));
    }

    /// <summary>The header of a proof as RFC 9449 section 4.2 has it, in UTF-8 JSON.</summary>
    public byte[] Header() => JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object> { ["typ"] = "dpop+jwt", ["alg"] = _algorithm, ["jwk"] = PublicJwk() });

    /// <summary>The claims of a proof for <paramref name="method"/> to <paramref name="url"/>, with a new jti and iat now.</summary>
    public Dictionary<string, object> Claims(string method, string url) => new()
    {
        ["jti"] = Guid.NewGuid().ToString("N"), ["htm"] = method, ["htu"] = url, ["iat"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
    };

    /// <summary>Posts <paramref name="form"/> to the endpoint discovery names, with a DPoP proof and HTTP Basic client authentication if given.</summary>
    public static async Task<HttpResponseMessage> PostAsync(ServerFixture server, string endpoint, Dictionary<string, string> form, string? proof,
        TestClient? basicAuth = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync(endpoint)) { Content = new FormUrlEncodedContent(form) };
        if (basicAuth is not null)
        {
            request.Headers.Authorization = OAuth.BasicAuth(basicAuth);
        }

        if (proof is not null)
        {
            request.Headers.Add("DPoP", proof);
        }

        return await server.CreateClient().SendAsync(request);
    }

    /// <summary>Signs a header and a payload given as bytes, whatever they hold.</summary>
    public string Sign(byte[] header, byte[] payload)
    {
        var signed = $"{Base64UrlEncoder.Encode(header)}.{Base64UrlEncoder.Encode(payload)}";
        var data = Encoding.ASCII.GetBytes(signed);
        var hash = _algorithm.EndsWith("384", StringComparison.Ordinal) ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256;
        var signature = _ec is not null
            ? _ec.SignData(data, hash, DSASignatureFormat.IeeeP1363FixedFieldConcatenation)
            : _rsa!.SignData(data, hash, _algorithm.StartsWith("PS", StringComparison.Ordinal) ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1);
        return $"{signed}.{Base64UrlEncoder.Encode(signature)}";
    }
}

public sealed class SqliteDpopTests(SqliteServerFixture server) : DpopTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlDpopTests(PostgreSqlServerFixture server) : DpopTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
