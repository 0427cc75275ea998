using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Admin;
using IdentityServer.Tests.Clients;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// Signed authorization requests (JAR, RFC 9101): a client with registered keys sends its request as a JWT it signed,
/// to the authorization endpoint or pushed; only the request object's parameters count; a flawed one is refused with
/// invalid_request_object; a client registered with require_signed_request_object must sign every request.
/// </summary>
public abstract class RequestObjectTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableTheory]
    [InlineData("RS256")]
    [InlineData("PS256")]
    [InlineData("ES256")]
    public async Task A_signed_request_completes_the_code_flow_and_the_parameters_outside_it_are_ignored(string algorithm)
    {
        var client = await CreateClientAsync();
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var (state, nonce) = (Unique.Name("state"), Unique.Name("nonce"));
        var parameters = Parameters(pkce, state, nonce);
        parameters["max_age"] = 3600; // a number in JSON, as RFC 9101 writes it
        var requestObject = await client.RequestObjectAsync(parameters, header: h => h["alg"] = algorithm);

        // Outside the request object: another state, scope and an unregistered redirect URI, and a prompt=none that would
        // refuse a browser without a session; none of them count.
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await AuthorizeUrlAsync(client, new()
        {
            ["request"] = requestObject, ["state"] = "outside", ["scope"] = "openid", ["redirect_uri"] = "https://evil.test/callback", ["prompt"] = "none",
        }), user);

        Assert.Equal(state, result["state"]);
        var tokens = await RedeemAsync(client, result["code"], pkce);
        Assert.Equal("openid profile", tokens.GetProperty("scope").GetString());
        var id = Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
        Assert.Equal(nonce, id.GetProperty("nonce").GetString());
        Assert.Equal(user.Id, id.GetProperty("sub").GetString());
    }

    /// <summary>A pushed request object (RFC 9126 with RFC 9101): pushed with the client's assertion, used by its request_uri.</summary>
    [SkippableFact]
    public async Task A_pushed_request_object_completes_the_code_flow()
    {
        var client = await CreateClientAsync();
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var state = Unique.Name("state");

        var pushed = await PushAsync(client, await client.RequestObjectAsync(Parameters(pkce, state, Unique.Name("nonce"))));
        var json = await OAuth.ReadJsonAsync(pushed);
        Assert.True(pushed.StatusCode == HttpStatusCode.Created, $"{(int)pushed.StatusCode}: {json}");
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await AuthorizeUrlAsync(client, new() { ["request_uri"] = json.GetProperty("request_uri").GetString()! }), user);

        Assert.Equal(state, result["state"]);
        await RedeemAsync(client, result["code"], pkce);
    }

    [SkippableTheory]
    [InlineData("tampered")]
    [InlineData("another key")]
    [InlineData("unsigned")]
    [InlineData("encrypted")]
    [InlineData("no exp")]
    [InlineData("expired")]
    [InlineData("exp too far")]
    [InlineData("exp not a date")]
    [InlineData("nbf ahead")]
    [InlineData("nbf too old")]
    [InlineData("iat ahead")]
    [InlineData("no client named")]
    [InlineData("client credentials inside")]
    [InlineData("critical header")]
    [InlineData("bytes after the payload")]
    [InlineData("another audience")]
    [InlineData("another issuer")]
    [InlineData("another client_id")]
    [InlineData("another typ")]
    [InlineData("request_uri inside")]
    [InlineData("array scope")]
    public async Task A_flawed_request_object_is_refused_at_the_push_with_invalid_request_object(string flaw)
    {
        var client = await CreateClientAsync();
        var parameters = Parameters(Pkce.Create(), Unique.Name("state"), Unique.Name("nonce"));
        var now = DateTimeOffset.UtcNow;
        var requestObject = flaw switch
        {
            "tampered" => Tamper(await client.RequestObjectAsync(parameters)),
            "another key" => await (await CreateClientAsync()).RequestObjectAsync(parameters, payload: p => (p["iss"], p["client_id"]) = (client.ClientId, client.ClientId)),
            "unsigned" => await client.RequestObjectAsync(parameters, header: h => h["alg"] = "none"),
            "encrypted" => "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
            "no exp" => await client.RequestObjectAsync(parameters, payload: p => p.Remove("exp")),
            "expired" => await client.RequestObjectAsync(parameters, payload: p => p["exp"] = now.AddMinutes(-10).ToUnixTimeSeconds()),
            "exp too far" => await client.RequestObjectAsync(parameters, payload: p => p["exp"] = now.AddMinutes(62).ToUnixTimeSeconds()),
            "exp not a date" => await client.RequestObjectAsync(parameters, payload: p => p["exp"] = "soon"),
            "nbf ahead" => await client.RequestObjectAsync(parameters, payload: p => p["nbf"] = now.AddMinutes(10).ToUnixTimeSeconds()),
            "nbf too old" => await client.RequestObjectAsync(parameters, payload: p => p["nbf"] = now.AddHours(-2).ToUnixTimeSeconds()),
            "iat ahead" => await client.RequestObjectAsync(parameters, payload: p => p["iat"] = now.AddMinutes(10).ToUnixTimeSeconds()),
            "no client named" => await client.RequestObjectAsync(parameters, payload: p => { p.Remove("iss"); p.Remove("client_id"); }),
            // Credentials inside would let anyone who saw the request object in the browser push it as the client.
            "client credentials inside" => await client.RequestObjectAsync(parameters, payload: p =>
                (p["client_assertion_type"], p["client_assertion"]) = (SigningClient.AssertionType, "an-assertion")),
            "critical header" => await client.RequestObjectAsync(parameters, header: h => (h["crit"], h["x-unknown"]) = (new[] { "x-unknown" }, 1)),
            "bytes after the payload" => await ResignedAsync(client, parameters, payload => payload + " x"),
            "another audience" => await client.RequestObjectAsync(parameters, payload: p => p["aud"] = "https://other-server.test/"),
            "another issuer" => await client.RequestObjectAsync(parameters, payload: p => p["iss"] = Unique.Name("other")),
            "another client_id" => await client.RequestObjectAsync(parameters, payload: p => p["client_id"] = Unique.Name("other")),
            "another typ" => await client.RequestObjectAsync(parameters, header: h => h["typ"] = "client-authentication+jwt"),
            "request_uri inside" => await client.RequestObjectAsync(parameters, payload: p => p["request_uri"] = "urn:ietf:params:oauth:request_uri:x"),
            "array scope" => await client.RequestObjectAsync(parameters, payload: p => p["scope"] = new[] { "openid" }),
            _ => throw new ArgumentException(flaw),
        };

        var response = await PushAsync(client, requestObject);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_request_object", json.GetProperty("error").GetString());
    }

    /// <summary>
    /// At the authorization endpoint the refusal goes back to the redirect URI sent beside the request object when that
    /// is registered for the client (as any other error), and stays on the error page when none is.
    /// </summary>
    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_flawed_request_object_at_the_authorization_endpoint_is_refused_with_invalid_request_object(bool redirectUriOutside)
    {
        var client = await CreateClientAsync();
        var requestObject = Tamper(await client.RequestObjectAsync(Parameters(Pkce.Create(), Unique.Name("state"), Unique.Name("nonce"))));
        var outside = new Dictionary<string, string> { ["request"] = requestObject };
        if (redirectUriOutside)
        {
            (outside["redirect_uri"], outside["state"]) = (OAuth.AppRedirectUri, "outside");
        }

        var page = await server.CreateBrowser().NavigateAsync(await AuthorizeUrlAsync(client, outside), OAuth.IsApp);

        if (redirectUriOutside)
        {
            Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
            var result = OAuth.QueryOf(page.RedirectTarget!);
            Assert.Equal("invalid_request_object", result["error"]);
            Assert.Equal("outside", result["state"]);
            Assert.False(result.ContainsKey("code"));
        }
        else
        {
            Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
            Assert.Equal(HttpStatusCode.BadRequest, page.Status);
            Assert.Contains("invalid_request_object", page.Body);
        }
    }

    /// <summary>
    /// A request object that expired (while the person signed in, say) is still the client's own: the refusal goes to its
    /// redirect_uri with its state, though nothing beside it says where.
    /// </summary>
    [SkippableFact]
    public async Task An_expired_request_object_is_refused_to_its_own_redirect_uri_with_its_state()
    {
        var client = await CreateClientAsync();
        var state = Unique.Name("state");
        var requestObject = await client.RequestObjectAsync(Parameters(Pkce.Create(), state, Unique.Name("nonce")),
            payload: p => p["exp"] = DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeSeconds());

        var page = await server.CreateBrowser().NavigateAsync(await AuthorizeUrlAsync(client, new() { ["request"] = requestObject }), OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.Equal("invalid_request_object", result["error"]);
        Assert.Equal(state, result["state"]);
    }

    /// <summary>
    /// require_signed_request_object: an unsigned request is refused, pushed or not; a signed one goes through, and so
    /// does the request_uri of a signed push.
    /// </summary>
    [SkippableFact]
    public async Task A_client_that_must_sign_its_requests_is_refused_unsigned_ones_and_served_signed_ones()
    {
        var client = await CreateClientAsync(requireSignedRequests: true);
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var parameters = Parameters(pkce, Unique.Name("state"), Unique.Name("nonce"));
        var unsigned = parameters.ToDictionary(p => p.Key, p => p.Value.ToString()!);

        var pushedUnsigned = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint", await WithAssertionAsync(client, unsigned));
        var pushedError = await OAuth.ReadJsonAsync(pushedUnsigned);
        Assert.True(pushedUnsigned.StatusCode == HttpStatusCode.BadRequest, $"{(int)pushedUnsigned.StatusCode}: {pushedError}");
        Assert.Equal("invalid_request", pushedError.GetProperty("error").GetString());
        Assert.Contains("request object", pushedError.GetProperty("error_description").GetString());

        var browser = server.CreateBrowser();
        var refused = await browser.NavigateAsync(await AuthorizeUrlAsync(client, unsigned), OAuth.IsApp);
        Assert.True(refused.RedirectTarget is not null && OAuth.IsApp(refused.RedirectTarget), $"{(int)refused.Status} at {refused.Uri}:\n{refused.Body}");
        Assert.Equal("invalid_request", OAuth.QueryOf(refused.RedirectTarget!)["error"]);

        var signed = await OAuth.AuthorizeAsync(browser, await AuthorizeUrlAsync(client, new() { ["request"] = await client.RequestObjectAsync(parameters) }), user);
        await RedeemAsync(client, signed["code"], pkce);

        var pkceForPush = Pkce.Create();
        var pushed = await OAuth.ReadJsonAsync(await PushAsync(client, await client.RequestObjectAsync(Parameters(pkceForPush, Unique.Name("state"), Unique.Name("nonce")))));
        var byReference = await OAuth.AuthorizeAsync(browser, await AuthorizeUrlAsync(client, new() { ["request_uri"] = pushed.GetProperty("request_uri").GetString()! }), user);
        await RedeemAsync(client, byReference["code"], pkceForPush);
    }

    [SkippableFact]
    public async Task Discovery_advertises_signed_requests_and_their_algorithms()
    {
        var discovery = await OAuth.ReadJsonAsync(await server.CreateClient().GetAsync("/.well-known/openid-configuration"));

        Assert.True(discovery.GetProperty("request_parameter_supported").GetBoolean());
        var algorithms = Jwt.Strings(discovery.GetProperty("request_object_signing_alg_values_supported"));
        Assert.Contains("RS256", algorithms);
        Assert.Contains("PS256", algorithms);
        Assert.Contains("ES256", algorithms);
        Assert.DoesNotContain("none", algorithms);
    }

    /// <summary>The setting needs keys to verify with; it reads back as sent, and a replace without it turns it off.</summary>
    [SkippableFact]
    public async Task Require_signed_request_object_needs_the_clients_keys_and_reads_back()
    {
        var admin = await AdminApiCalls.AdminAsync(server);
        var withSecret = JsonSerializer.Serialize(new
        {
            client_id = Unique.Name("jar"), grant_types = new[] { "authorization_code" }, redirect_uris = new[] { OAuth.AppRedirectUri },
            require_signed_request_object = true,
        });
        await (await admin.PostJsonAsync(AdminApiCalls.ClientsUrl, withSecret))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "require_signed_request_object");

        var client = await CreateClientAsync(requireSignedRequests: true);
        var url = $"{AdminApiCalls.ClientsUrl}/{client.ClientId}";
        var read = await (await admin.GetAsync(url)).ExpectAsync(HttpStatusCode.OK);
        Assert.True(read.GetProperty("require_signed_request_object").GetBoolean(), read.ToString());

        var replacement = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(read.GetRawText())!;
        replacement.Remove("require_signed_request_object");
        await (await admin.PutJsonAsync(url, JsonSerializer.Serialize(replacement))).ExpectAsync(HttpStatusCode.OK);
        Assert.False((await (await admin.GetAsync(url)).ExpectAsync(HttpStatusCode.OK)).TryGetProperty("require_signed_request_object", out _));
    }

    private Task<SigningClient> CreateClientAsync(bool requireSignedRequests = false) => SigningClient.CreateAsync(server, c =>
    {
        c.GrantTypes = ["authorization_code"];
        c.RedirectUris = [OAuth.AppRedirectUri];
        c.Scope = "openid profile";
        c.ConsentType = "implicit";
        c.RequireSignedRequestObject = requireSignedRequests ? true : null;
    });

    private static Dictionary<string, object> Parameters(Pkce pkce, string state, string nonce) => new()
    {
        ["response_type"] = "code",
        ["redirect_uri"] = OAuth.AppRedirectUri,
        ["scope"] = "openid profile",
        ["state"] = state,
        ["nonce"] = nonce,
        ["code_challenge"] = pkce.Challenge,
        ["code_challenge_method"] = "S256",
    };

    /// <summary>A request object as <see cref="SigningClient.RequestObjectAsync"/> makes it, its payload's JSON text changed and signed again.</summary>
    private static async Task<string> ResignedAsync(SigningClient client, Dictionary<string, object> parameters, Func<string, string> edit)
    {
        var parts = (await client.RequestObjectAsync(parameters)).Split('.');
        return client.SignJson(Base64UrlEncoder.Decode(parts[0]), edit(Base64UrlEncoder.Decode(parts[1])));
    }

    /// <summary>The request object with one character of its payload changed: its signature no longer matches.</summary>
    private static string Tamper(string jwt)
    {
        var parts = jwt.Split('.');
        var payload = Base64UrlEncoder.Decode(parts[1]).Replace("openid profile", "openid profilf", StringComparison.Ordinal);
        return $"{parts[0]}.{Base64UrlEncoder.Encode(payload)}.{parts[2]}";
    }

    private async Task<string> AuthorizeUrlAsync(SigningClient client, Dictionary<string, string> parameters) =>
        QueryHelpers.AddQueryString(await server.EndpointAsync("authorization_endpoint"),
            new Dictionary<string, string?>(parameters.Select(p => KeyValuePair.Create(p.Key, (string?)p.Value))) { ["client_id"] = client.ClientId });

    private static async Task<Dictionary<string, string>> WithAssertionAsync(SigningClient client, Dictionary<string, string> form) =>
        SigningClient.WithAssertion(client.ClientId, await client.AssertionAsync(), form);

    private async Task<HttpResponseMessage> PushAsync(SigningClient client, string requestObject) =>
        await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint", await WithAssertionAsync(client, new() { ["request"] = requestObject }));

    private async Task<JsonElement> RedeemAsync(SigningClient client, string code, Pkce pkce)
    {
        var response = await OAuth.PostTokenAsync(server, await WithAssertionAsync(client, new()
        {
            ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = pkce.Verifier,
        }));
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }
}

public sealed class SqliteRequestObjectTests(SqliteServerFixture server)
    : RequestObjectTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlRequestObjectTests(PostgreSqlServerFixture server)
    : RequestObjectTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
