using System.Net;
using System.Net.Http.Headers;
using System.Text;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// What the code flow refuses, and how: errors go back to a registered redirect URI when there is one, to an error
/// page when there is not, as OAuth error JSON at the token endpoint; bad input never yields a 5xx.
/// </summary>
public abstract class AuthorizationNegativeTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableTheory]
    [InlineData("https://evil.test/callback")]
    [InlineData("https://app.test/callback?extra=1")]
    [InlineData("https://app.test/callback/")]
    [InlineData("https://APP.test/callback#fragment")]
    [InlineData("http://app.test/callback")]
    public async Task An_unregistered_or_non_exact_redirect_uri_gets_an_error_page_and_no_redirect(string redirectUri)
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid"); // signed in: nothing else stands in the way

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(), redirectUri),
            stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
        Assert.Equal(HttpStatusCode.BadRequest, page.Status);
        Assert.Equal(TestServerFactory.Authority.Host, page.Uri.Host);
        Assert.Contains("invalid_request", page.Body);
    }

    [SkippableFact]
    public async Task An_unknown_client_gets_an_error_page_and_no_redirect()
    {
        var page = await server.CreateBrowser().NavigateAsync(
            await OAuth.AuthorizeUrlAsync(server, Unique.Name("nobody"), "openid", Pkce.Create()),
            stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
        Assert.Equal(HttpStatusCode.BadRequest, page.Status);
    }

    [SkippableFact]
    public async Task A_missing_code_challenge_is_sent_back_as_invalid_request()
    {
        var client = await server.CreatePublicClientAsync();

        var result = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce: null));

        Assert.Equal("invalid_request", result["error"]);
    }

    [SkippableFact]
    public async Task An_error_for_a_form_post_request_is_posted_back_to_the_client()
    {
        var client = await server.CreatePublicClientAsync();
        var state = Unique.Name("state");

        var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce: null,
            extra: new Dictionary<string, string?> { ["response_mode"] = "form_post", ["state"] = state }), OAuth.IsApp);

        Assert.Equal(HttpStatusCode.OK, page.Status);
        var form = page.Document.QuerySelector("form[method=post]");
        Assert.NotNull(form);
        Assert.Equal(OAuth.AppRedirectUri, form!.GetAttribute("action"));
        Assert.Equal("invalid_request", form.QuerySelector("input[name=error]")?.GetAttribute("value"));
        Assert.Equal(state, form.QuerySelector("input[name=state]")?.GetAttribute("value"));
    }

    [SkippableTheory]
    [InlineData("abc")]
    [InlineData("-5")]
    [InlineData("1.5")]
    public async Task A_max_age_that_is_not_a_number_of_seconds_is_sent_back_as_invalid_request(string maxAge)
    {
        var client = await server.CreatePublicClientAsync();

        var result = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["max_age"] = maxAge, ["state"] = Unique.Name("state") }));

        Assert.Equal("invalid_request", result["error"]);
    }

    /// <summary>
    /// A client asking for a token or an id_token reads its answer from the fragment (RFC 6749 4.2.2.1, OAuth 2.0 Multiple
    /// Response Types 5), so that is where it hears that this server does not issue them; in the query it would see nothing.
    /// </summary>
    [SkippableTheory]
    [InlineData("token")]
    [InlineData("id_token")]
    [InlineData("id_token token")]
    [InlineData("code id_token")]
    public async Task An_implicit_or_hybrid_response_type_is_refused_in_the_fragment_its_client_reads(string responseType)
    {
        var client = await server.CreatePublicClientAsync();
        var state = Unique.Name("state");

        var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["response_type"] = responseType, ["state"] = state }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget),
            $"Expected an error sent back to the app, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        Assert.Equal(string.Empty, page.RedirectTarget!.Query);
        var result = QueryHelpers.ParseQuery(page.RedirectTarget.Fragment.TrimStart('#')).ToDictionary(p => p.Key, p => p.Value.ToString());
        Assert.Equal("unsupported_response_type", result["error"]);
        Assert.Equal(state, result["state"]);
        Assert.Equal(await server.EndpointAsync("issuer"), result["iss"]);
    }

    /// <summary>
    /// OpenIddict takes "code code" for the code flow but finds no response mode for it: a signed-in user's request was a
    /// 500, and a prompt=none one an error page. It is the client's mistake, so the client hears of it.
    /// </summary>
    [SkippableTheory]
    [InlineData(null)]
    [InlineData("none")]
    public async Task A_response_type_naming_code_twice_is_sent_back_as_invalid_request_to_a_signed_in_user(string? prompt)
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid");
        var state = Unique.Name("state");

        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["response_type"] = "code code", ["state"] = state, ["prompt"] = prompt }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget),
            $"Expected an error sent back to the app, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.Equal("invalid_request", result["error"]);
        Assert.Contains("response_type", result["error_description"]);
        Assert.Equal(state, result["state"]);
        Assert.False(result.ContainsKey("code"));
    }

    /// <summary>A max_age too large for any number here is a valid one that is never reached: the sign-in goes on.</summary>
    [SkippableFact]
    public async Task A_max_age_beyond_any_session_age_is_accepted()
    {
        var client = await server.CreatePublicClientAsync();

        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["max_age"] = "99999999999999999999" }), await server.CreateUserAsync());

        Assert.True(result.ContainsKey("code"), string.Join(", ", result));
    }

    /// <summary>An S256 challenge is 43 base64url characters (RFC 7636 4.2); any other is refused, not given a code no verifier redeems.</summary>
    [SkippableTheory]
    [InlineData("abc")]
    [InlineData("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cMx")]
    [InlineData("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM")]
    public async Task A_malformed_code_challenge_is_sent_back_as_invalid_request(string challenge)
    {
        var client = await server.CreatePublicClientAsync();

        var result = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce: null,
            extra: new Dictionary<string, string?> { ["code_challenge"] = challenge, ["code_challenge_method"] = "S256" }));

        Assert.Equal("invalid_request", result["error"]);
        Assert.Contains("code_challenge", result["error_description"]);
    }

    /// <summary>A method the authorization endpoint does not take is 405, not its consent page rendered with nothing to consent to.</summary>
    [SkippableTheory]
    [InlineData("PUT")]
    [InlineData("DELETE")]
    [InlineData("PATCH")]
    public async Task Another_method_at_the_authorization_endpoint_is_405(string method)
    {
        var client = await server.CreatePublicClientAsync();
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create());

        var response = await server.CreateClient().SendAsync(new HttpRequestMessage(new HttpMethod(method), url));

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.Equal(["GET", "HEAD", "POST"], response.Content.Headers.Allow.Order(StringComparer.Ordinal));
        Assert.DoesNotContain("would like to", await response.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task A_pushed_request_with_a_malformed_max_age_is_refused_when_it_is_pushed_and_an_empty_one_counts_as_absent()
    {
        var client = await server.CreatePublicClientAsync();
        var pkce = Pkce.Create();
        var parameters = new Dictionary<string, string>
        {
            ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = "openid",
            ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
        };

        var refused = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint",
            new Dictionary<string, string>(parameters) { ["client_id"] = client.ClientId, ["max_age"] = "abc" });
        var empty = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint",
            new Dictionary<string, string>(parameters) { ["client_id"] = client.ClientId, ["max_age"] = "" });

        await AssertErrorAsync(refused, HttpStatusCode.BadRequest, "invalid_request");
        Assert.Equal(HttpStatusCode.Created, empty.StatusCode);
    }

    [SkippableFact]
    public async Task The_plain_code_challenge_method_is_refused()
    {
        var client = await server.CreatePublicClientAsync();
        var verifier = Pkce.Create().Verifier;

        var result = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce: null,
            extra: new Dictionary<string, string?> { ["code_challenge"] = verifier, ["code_challenge_method"] = "plain" }));

        Assert.Equal("invalid_request", result["error"]);
        var methods = (await OAuth.ReadJsonAsync(await server.CreateClient().GetAsync("/.well-known/openid-configuration")))
            .GetProperty("code_challenge_methods_supported").EnumerateArray().Select(m => m.GetString());
        Assert.Equal(["S256"], methods);
    }

    [SkippableFact]
    public async Task A_wrong_code_verifier_is_refused_with_invalid_grant()
    {
        var client = await server.CreatePublicClientAsync();
        var code = await CodeAsync(client, Pkce.Create(), await server.CreateUserAsync());

        var response = await RedeemRawAsync(client, code, Pkce.Create().Verifier);

        await AssertErrorAsync(response, HttpStatusCode.BadRequest, "invalid_grant");
    }

    [SkippableFact]
    public async Task A_missing_code_verifier_is_refused()
    {
        var client = await server.CreatePublicClientAsync();
        var code = await CodeAsync(client, Pkce.Create(), await server.CreateUserAsync());

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = client.ClientId,
            ["code"] = code,
            ["redirect_uri"] = OAuth.AppRedirectUri,
        });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains((await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString(), new[] { "invalid_request", "invalid_grant" });
    }

    /// <summary>RFC 6749 5.2: "no client authentication included" is invalid_client, for a code's redemption too.</summary>
    [SkippableFact]
    public async Task A_code_redemption_naming_no_client_is_401_invalid_client()
    {
        var client = await server.CreatePublicClientAsync();
        var pkce = Pkce.Create();
        var code = await CodeAsync(client, pkce, await server.CreateUserAsync());

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["code"] = code,
            ["redirect_uri"] = OAuth.AppRedirectUri,
            ["code_verifier"] = pkce.Verifier,
        });

        await AssertErrorAsync(response, HttpStatusCode.Unauthorized, "invalid_client");
        await OAuth.RedeemAsync(server, client, code, pkce); // nothing was redeemed by the refused request
    }

    /// <summary>
    /// A scope sent with a code is ignored, as RFC 6749 3.2 has the token endpoint ignore what a request does not define:
    /// the tokens have the scopes the code was granted, no more and no fewer.
    /// </summary>
    [SkippableFact]
    public async Task A_scope_sent_with_a_code_is_ignored()
    {
        var client = await server.CreatePublicClientAsync();
        var pkce = Pkce.Create();
        var code = await CodeAsync(client, pkce, await server.CreateUserAsync(), "openid offline_access");

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = client.ClientId,
            ["code"] = code,
            ["redirect_uri"] = OAuth.AppRedirectUri,
            ["code_verifier"] = pkce.Verifier,
            ["scope"] = "openid",
        });

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        Assert.Equal(["offline_access", "openid"], json.GetProperty("scope").GetString()!.Split(' ').Order());
        Assert.True(json.TryGetProperty("refresh_token", out _));
    }

    [SkippableFact]
    public async Task A_reused_code_is_refused_and_revokes_the_tokens_of_its_first_redemption()
    {
        var client = await server.CreatePublicClientAsync();
        var pkce = Pkce.Create();
        var code = await CodeAsync(client, pkce, await server.CreateUserAsync(), "openid offline_access");
        var first = await OAuth.RedeemAsync(server, client, code, pkce);
        var accessToken = first.GetProperty("access_token").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);

        var replay = await RedeemRawAsync(client, code, pkce.Verifier);

        await AssertErrorAsync(replay, HttpStatusCode.BadRequest, "invalid_grant");
        await AssertErrorAsync(await OAuth.RefreshAsync(server, client, first.GetProperty("refresh_token").GetString()!),
            HttpStatusCode.BadRequest, "invalid_grant");
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);
    }

    [SkippableFact]
    public async Task A_code_redeemed_by_another_public_client_is_refused()
    {
        var client = await server.CreatePublicClientAsync();
        var thief = await server.CreatePublicClientAsync();
        var pkce = Pkce.Create();
        var code = await CodeAsync(client, pkce, await server.CreateUserAsync());

        var response = await RedeemRawAsync(thief, code, pkce.Verifier);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains((await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString(), new[] { "invalid_grant", "invalid_client" });
        Assert.DoesNotContain("access_token", await response.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task A_code_redeemed_by_a_confidential_client_with_its_own_secret_is_refused()
    {
        var client = await server.CreatePublicClientAsync();
        var thief = await server.CreateConfidentialClientAsync(c =>
        {
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
        });
        var pkce = Pkce.Create();
        var code = await CodeAsync(client, pkce, await server.CreateUserAsync());

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["code"] = code,
            ["redirect_uri"] = OAuth.AppRedirectUri,
            ["code_verifier"] = pkce.Verifier,
        }, basicAuth: thief);

        Assert.True(response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.Unauthorized, response.StatusCode.ToString());
        Assert.Contains((await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString(), new[] { "invalid_grant", "invalid_client" });
    }

    [SkippableFact]
    public async Task A_confidential_client_with_a_wrong_secret_gets_401_invalid_client()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");
        var wrong = client with { ClientSecret = Unique.Secret() };

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string> { ["grant_type"] = "client_credentials" }, basicAuth: wrong);

        await AssertErrorAsync(response, HttpStatusCode.Unauthorized, "invalid_client");
        var right = await OAuth.PostTokenAsync(server, new Dictionary<string, string> { ["grant_type"] = "client_credentials" }, basicAuth: client);
        Assert.Equal(HttpStatusCode.OK, right.StatusCode);
    }

    [SkippableFact]
    public async Task An_unknown_scope_is_sent_back_as_invalid_scope()
    {
        var client = await server.CreatePublicClientAsync($"openid {Unique.Name("nosuchscope")}");

        var result = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, $"openid {Unique.Name("nosuchscope")}", Pkce.Create()));

        Assert.Equal("invalid_scope", result["error"]);
    }

    [SkippableFact]
    public async Task An_unknown_scope_at_the_token_endpoint_is_refused_with_invalid_scope()
    {
        var client = await server.CreateConfidentialClientAsync();

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["scope"] = Unique.Name("nosuchscope"),
        }, basicAuth: client);

        await AssertErrorAsync(response, HttpStatusCode.BadRequest, "invalid_scope");
    }

    /// <summary>
    /// A scope that exists but that the client may not ask for is invalid_scope (RFC 6749 4.1.2.1 and 5.2), wherever
    /// it is asked for; OpenIddict alone said invalid_request.
    /// </summary>
    [SkippableFact]
    public async Task A_scope_the_client_is_not_allowed_is_refused_with_invalid_scope_at_every_endpoint()
    {
        var client = await server.CreatePublicClientAsync("openid");
        var machine = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");
        var device = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.ApplicationType = "native";
            c.GrantTypes = ["urn:ietf:params:oauth:grant-type:device_code"];
            c.Scope = "openid";
        });
        var pkce = Pkce.Create();
        var otherScope = await server.CreateScopeAsync();

        var authorize = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, $"openid {otherScope}", pkce));
        var pushed = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint", new Dictionary<string, string>
        {
            ["client_id"] = client.ClientId, ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri,
            ["scope"] = $"openid {otherScope}", ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
        });
        var token = await OAuth.PostTokenAsync(server, new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "admin" }, machine);
        var deviceCodes = await OAuth.PostFormAsync(server, "device_authorization_endpoint",
            new Dictionary<string, string> { ["client_id"] = device.ClientId, ["scope"] = $"openid {otherScope}" });

        Assert.Equal("invalid_scope", authorize["error"]);
        Assert.Contains(otherScope, authorize["error_description"]);
        await AssertErrorAsync(pushed, HttpStatusCode.BadRequest, "invalid_scope");
        await AssertErrorAsync(token, HttpStatusCode.BadRequest, "invalid_scope");
        Assert.Contains("'admin'", (await OAuth.ReadJsonAsync(token)).GetProperty("error_description").GetString());
        await AssertErrorAsync(deviceCodes, HttpStatusCode.BadRequest, "invalid_scope");
    }

    /// <summary>offline_access from a client without the refresh token grant is a scope it may not have, too.</summary>
    [SkippableFact]
    public async Task Offline_access_for_a_client_without_the_refresh_token_grant_is_sent_back_as_invalid_scope()
    {
        var client = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid offline_access";
        });

        var result = await AuthorizeErrorAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid offline_access", Pkce.Create()));

        Assert.Equal("invalid_scope", result["error"]);
        Assert.Contains("offline_access", result["error_description"]);
    }

    /// <summary>Other refusals keep their own error: a client not allowed the flow at all is still unauthorized_client.</summary>
    [SkippableFact]
    public async Task A_client_not_allowed_the_grant_still_gets_unauthorized_client_whatever_scope_it_asks_for()
    {
        var web = await server.CreateConfidentialClientAsync(c =>
        {
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
        });

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["scope"] = "admin offline_access",
        }, web);

        await AssertErrorAsync(response, HttpStatusCode.BadRequest, "unauthorized_client");
    }

    public static TheoryData<string> MalformedRequests => [
        "token: empty body",
        "token: unknown grant_type",
        "token: GET",
        "token: JSON body",
        "token: code without anything else",
        "token: duplicate grant_type",
        "token: very long parameters",
        "token: garbage refresh token",
        "token: NUL character",
        "token: too many fields",
        "token: multipart body without its boundary",
        "introspection: multipart body without its boundary",
        "authorize: no parameters",
        "authorize: garbage",
        "authorize: unknown response_type",
        "authorize: duplicate client_id",
        "authorize: very long parameters",
        "authorize: POST without form",
        "authorize: request object",
        "authorize: NUL character",
        "authorize: POST with a NUL character",
        "authorize: NUL character in client_id",
        "token: NUL character in client_id",
        "end session: NUL character in client_id",
        "userinfo: garbage bearer",
        "revocation: no token",
        "introspection: anonymous",
        "par: empty body",
        "par: garbage request_uri at authorize",
        "end session: garbage",
        "end session: multipart body without its boundary",
        "login page: multipart body without its boundary",
        "registration page: multipart body without its boundary",
        "authorize: multipart body without its boundary",
        "token: malformed form content type",
        "token: form content type with a suffix",
        "userinfo: malformed form content type",
        "introspection: form content type list",
        "authorize: malformed form content type",
        "end session: malformed form content type",
    ];

    [SkippableTheory]
    [MemberData(nameof(MalformedRequests))]
    public async Task A_malformed_request_never_gets_a_server_error(string name)
    {
        var client = await server.CreatePublicClientAsync();
        var longValue = new string('a', 20_000);
        var authorize = await server.EndpointAsync("authorization_endpoint");
        var token = await server.EndpointAsync("token_endpoint");
        var validAuthorize = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create());
        using var request = name switch
        {
            "token: empty body" => Post(token, new StringContent(string.Empty, Encoding.UTF8, "application/x-www-form-urlencoded")),
            "token: unknown grant_type" => Post(token, Form(("grant_type", "urn:example:nonsense"), ("client_id", client.ClientId))),
            "token: GET" => new HttpRequestMessage(HttpMethod.Get, token + "?grant_type=client_credentials"),
            "token: JSON body" => Post(token, new StringContent("{\"grant_type\":\"client_credentials\"}", Encoding.UTF8, "application/json")),
            "token: code without anything else" => Post(token, Form(("grant_type", "authorization_code"))),
            "token: duplicate grant_type" => Post(token, Form(("grant_type", "authorization_code"), ("grant_type", "refresh_token"), ("client_id", client.ClientId))),
            "token: very long parameters" => Post(token, Form(("grant_type", "authorization_code"), ("client_id", client.ClientId), ("code", longValue), ("code_verifier", longValue))),
            "token: garbage refresh token" => Post(token, Form(("grant_type", "refresh_token"), ("client_id", client.ClientId), ("refresh_token", "\u00e9<script>"))),
            "token: NUL character" => Post(token, Form(("grant_type", "refresh_token"), ("client_id", client.ClientId), ("refresh_token", "a\u0000b"))),
            "token: too many fields" => Post(token, Form([("grant_type", "client_credentials"), .. Enumerable.Range(0, 2000).Select(i => ($"f{i}", "x"))])),
            "authorize: no parameters" => Get(authorize),
            "authorize: garbage" => Get(authorize + "?%%%&&==&client_id=%ZZ&\u00e9=\u00e9"),
            "authorize: unknown response_type" => Get(validAuthorize.Replace("response_type=code", "response_type=token%20id_token", StringComparison.Ordinal)),
            "authorize: duplicate client_id" => Get(validAuthorize + "&client_id=" + Uri.EscapeDataString(client.ClientId)),
            "authorize: very long parameters" => Get(validAuthorize + "&state=" + longValue + "&nonce=" + longValue),
            "authorize: POST without form" => Post(authorize, new StringContent("client_id=x", Encoding.UTF8, "text/plain")),
            "authorize: request object" => Get(validAuthorize + "&request=eyJhbGciOiJub25lIn0.e30."),
            "authorize: NUL character" => Get(validAuthorize + "&state=a%00b"),
            "authorize: POST with a NUL character" => Post(authorize, Form(("client_id", client.ClientId), ("state", "a\u0000b"))),

            // PostgreSQL cannot hold a NUL character: looking the client up fails in the database, not for want of a client.
            "authorize: NUL character in client_id" => Get(authorize + "?response_type=code&client_id=a%00b"),
            "token: NUL character in client_id" => Post(token, Form(("grant_type", "client_credentials"), ("client_id", "a\u0000b"), ("client_secret", "x"))),
            "end session: NUL character in client_id" => Get(await server.EndpointAsync("end_session_endpoint") + "?client_id=a%00b"),
            "userinfo: garbage bearer" => Bearer(await server.EndpointAsync("userinfo_endpoint"), "garbage"),
            "revocation: no token" => Post(await server.EndpointAsync("revocation_endpoint"), Form(("client_id", client.ClientId))),
            "introspection: anonymous" => Post(await server.EndpointAsync("introspection_endpoint"), Form(("token", "garbage"))),
            "par: empty body" => Post(await server.EndpointAsync("pushed_authorization_request_endpoint"), Form()),
            "par: garbage request_uri at authorize" => Get(authorize + "?client_id=" + Uri.EscapeDataString(client.ClientId)
                + "&request_uri=" + Uri.EscapeDataString("urn:ietf:params:oauth:request_uri:garbage")),
            "end session: garbage" => Get(await server.EndpointAsync("end_session_endpoint") + "?id_token_hint=%%%&post_logout_redirect_uri=javascript:alert(1)"),
            "token: multipart body without its boundary" => Post(token, MultipartWithoutBoundary()),
            "introspection: multipart body without its boundary" => Post(await server.EndpointAsync("introspection_endpoint"), MultipartWithoutBoundary()),
            "end session: multipart body without its boundary" => Post(await server.EndpointAsync("end_session_endpoint"), MultipartWithoutBoundary()),
            "login page: multipart body without its boundary" => Post(await server.EndpointAsync("issuer") + "Account/Login", MultipartWithoutBoundary()),
            "registration page: multipart body without its boundary" => Post(await server.EndpointAsync("issuer") + "Account/Register", MultipartWithoutBoundary()),
            "authorize: multipart body without its boundary" => Post(authorize, MultipartWithoutBoundary()),
            "token: malformed form content type" => Post(token, FormTyped("application/x-www-form-urlencoded; charset=\"")),
            "token: form content type with a suffix" => Post(token, FormTyped("application/x-www-form-urlencodedX")),
            "userinfo: malformed form content type" => Post(await server.EndpointAsync("userinfo_endpoint"), FormTyped("application/x-www-form-urlencoded;;")),
            "introspection: form content type list" => Post(await server.EndpointAsync("introspection_endpoint"), FormTyped("application/x-www-form-urlencoded,text/plain")),
            "authorize: malformed form content type" => Post(authorize, FormTyped("application/x-www-form-urlencoded; =")),
            "end session: malformed form content type" => Post(await server.EndpointAsync("end_session_endpoint"), FormTyped("application/x-www-form-urlencoded;charset=\"utf-8")),
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };

        var response = await server.CreateBrowser().SendAsync(request);

        var body = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode < 500, $"{name}: {(int)response.StatusCode}\n{body}");
        Assert.DoesNotContain("   at ", body); // no stack trace
        if (name.Contains("multipart", StringComparison.Ordinal) || name.Contains("content type", StringComparison.Ordinal))
        {
            // Refused before anything else reads the body, but after the security headers are in place.
            Assert.Equal("nosniff", string.Join(",", response.Headers.GetValues("X-Content-Type-Options")));
        }
        if (name.StartsWith("token:", StringComparison.Ordinal))
        {
            Assert.True((int)response.StatusCode is >= 400 and < 500, $"{name}: {(int)response.StatusCode}\n{body}");
            var json = await OAuth.ReadJsonAsync(response);
            Assert.False(string.IsNullOrEmpty(json.GetProperty("error").GetString()), body);
        }
    }

    private async Task<Dictionary<string, string>> AuthorizeErrorAsync(string url)
    {
        var page = await server.CreateBrowser().NavigateAsync(url, OAuth.IsApp);
        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget),
            $"Expected an error sent back to the app, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.False(result.ContainsKey("code"));
        Assert.Equal(OAuth.QueryOf(new Uri(url))["state"], result["state"]);
        Assert.Equal(await server.EndpointAsync("issuer"), result["iss"]);
        return result;
    }

    private async Task<string> CodeAsync(TestClient client, Pkce pkce, TestUser user, string scope = "openid")
    {
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, scope, pkce), user);
        return result["code"];
    }

    private Task<HttpResponseMessage> RedeemRawAsync(TestClient client, string code, string verifier) =>
        OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = client.ClientId,
            ["code"] = code,
            ["redirect_uri"] = OAuth.AppRedirectUri,
            ["code_verifier"] = verifier,
        });

    private static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string error)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == status, $"Expected {(int)status}, got {(int)response.StatusCode}: {json}");
        Assert.Equal(error, json.GetProperty("error").GetString());
    }

    private static HttpRequestMessage Get(string url) => new(HttpMethod.Get, url);

    private static HttpRequestMessage Post(string url, HttpContent content) => new(HttpMethod.Post, url) { Content = content };

    private static HttpRequestMessage Bearer(string url, string token)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return request;
    }

    /// <summary>A form body that may repeat a name (FormUrlEncodedContent keeps duplicates).</summary>
    /// <summary>A form body under a Content-Type header sent as it is, unchecked by HttpClient.</summary>
    private static StringContent FormTyped(string contentType)
    {
        var content = new StringContent("grant_type=client_credentials&token=x");
        content.Headers.Remove("Content-Type");
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        return content;
    }

    /// <summary>A body that says it is multipart but never contains its boundary: the form reader fails on it.</summary>
    private static StringContent MultipartWithoutBoundary()
    {
        var content = new StringContent("grant_type=client_credentials&client_id=x");
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=x");
        return content;
    }

    private static FormUrlEncodedContent Form(params (string Name, string Value)[] fields) =>
        new(fields.Select(f => KeyValuePair.Create(f.Name, f.Value)));
}

public sealed class SqliteAuthorizationNegativeTests(SqliteServerFixture server)
    : AuthorizationNegativeTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAuthorizationNegativeTests(PostgreSqlServerFixture server) : AuthorizationNegativeTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
