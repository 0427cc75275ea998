using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>PKCE (RFC 7636) values for one authorization request.</summary>
public sealed record Pkce(string Verifier, string Challenge)
{
    public static Pkce Create()
    {
        var verifier = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        return new Pkce(verifier, Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(verifier))));
    }
}

/// <summary>Reads a JWT's parts without validating it (validation is what the tests check separately).</summary>
public static class Jwt
{
    public static JsonElement Header(string token) => Part(token, 0);

    public static JsonElement Payload(string token) => Part(token, 1);

    /// <summary>A claim that may be a single string or an array of strings (<c>aud</c>), as an array.</summary>
    public static string[] Strings(JsonElement claim) => claim.ValueKind == JsonValueKind.Array
        ? [.. claim.EnumerateArray().Select(e => e.GetString()!)]
        : [claim.GetString()!];

    private static JsonElement Part(string token, int index) =>
        JsonDocument.Parse(Base64UrlEncoder.Decode(token.Split('.')[index])).RootElement.Clone();
}

/// <summary>The protocol steps a client takes, over the real HTTP surface.</summary>
public static class OAuth
{
    public const string AppRedirectUri = "https://app.test/callback";

    public static Func<Uri, bool> IsApp => uri => uri.Host == "app.test";

    public static async Task<string> AuthorizeUrlAsync(ServerFixture server, string clientId, string scope, Pkce? pkce,
        string redirectUri = AppRedirectUri, IDictionary<string, string?>? extra = null)
    {
        var parameters = new Dictionary<string, string?>
        {
            ["response_type"] = "code",
            ["client_id"] = clientId,
            ["redirect_uri"] = redirectUri,
            ["scope"] = scope,
            ["state"] = Unique.Name("state"),
            ["nonce"] = Unique.Name("nonce"),
        };
        if (pkce is not null)
        {
            parameters["code_challenge"] = pkce.Challenge;
            parameters["code_challenge_method"] = "S256";
        }

        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            parameters[key] = value;
        }

        return QueryHelpers.AddQueryString(await server.EndpointAsync("authorization_endpoint"), parameters);
    }

    /// <summary>Fills and submits the login page the browser is on.</summary>
    public static Task<BrowserPage> SignInAsync(Browser browser, BrowserPage loginPage, TestUser user, Func<Uri, bool>? stopAt = null)
    {
        Assert.Contains("/account/login", loginPage.Uri.AbsolutePath);
        return browser.SubmitAsync(loginPage, new Dictionary<string, string>
        {
            ["Input.UserName"] = user.UserName,
            ["Input.Password"] = user.Password,
        }, stopAt: stopAt ?? IsApp);
    }

    /// <summary>
    /// Runs the browser part of the code flow: authorize, sign in if asked, consent if asked; returns the
    /// parameters the server redirected back to the app with.
    /// </summary>
    public static async Task<Dictionary<string, string>> AuthorizeAsync(Browser browser, string authorizeUrl, TestUser? user)
    {
        var page = await browser.NavigateAsync(authorizeUrl, IsApp);
        if (page.Uri.AbsolutePath == "/account/login" && user is not null)
        {
            page = await SignInAsync(browser, page, user);
        }

        if (page.RedirectTarget is null && page.Document.QuerySelector("button[value=accept]") is not null)
        {
            page = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: IsApp);
        }

        Assert.True(page.RedirectTarget is not null && IsApp(page.RedirectTarget),
            $"Expected a redirect to the app, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        return QueryHelpers.ParseQuery(page.RedirectTarget!.Query).ToDictionary(p => p.Key, p => p.Value.ToString());
    }

    public static async Task<HttpResponseMessage> PostTokenAsync(ServerFixture server, IDictionary<string, string> form, TestClient? basicAuth = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync("token_endpoint"))
        {
            Content = new FormUrlEncodedContent(form),
        };
        if (basicAuth is not null)
        {
            request.Headers.Authorization = BasicAuth(basicAuth);
        }

        return await server.CreateClient().SendAsync(request);
    }

    public static AuthenticationHeaderValue BasicAuth(TestClient client) => new("Basic",
        Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Uri.EscapeDataString(client.ClientId)}:{Uri.EscapeDataString(client.ClientSecret!)}")));

    public static async Task<JsonElement> ReadJsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    /// <summary>Redeems a code for a public client with its PKCE verifier; returns the token response.</summary>
    public static async Task<JsonElement> RedeemAsync(ServerFixture server, TestClient client, string code, Pkce pkce, string redirectUri = AppRedirectUri)
    {
        var response = await PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = client.ClientId,
            ["code"] = code,
            ["redirect_uri"] = redirectUri,
            ["code_verifier"] = pkce.Verifier,
        });
        var json = await ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }

    public static async Task<HttpResponseMessage> RefreshAsync(ServerFixture server, TestClient client, string refreshToken) =>
        await PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token",
            ["client_id"] = client.ClientId,
            ["refresh_token"] = refreshToken,
        });

    /// <summary>Signs in and completes the whole code flow for a public client; returns the token response.</summary>
    public static async Task<JsonElement> SignInAndRedeemAsync(ServerFixture server, Browser browser, TestClient client, TestUser user, string scope,
        IDictionary<string, string?>? extra = null)
    {
        var pkce = Pkce.Create();
        var result = await AuthorizeAsync(browser, await AuthorizeUrlAsync(server, client.ClientId, scope, pkce, extra: extra), user);
        Assert.True(result.ContainsKey("code"), string.Join(", ", result));
        return await RedeemAsync(server, client, result["code"], pkce);
    }

    /// <summary>The query parameters of a redirect (e.g. to the app's callback).</summary>
    public static Dictionary<string, string> QueryOf(Uri uri) =>
        QueryHelpers.ParseQuery(uri.Query).ToDictionary(p => p.Key, p => p.Value.ToString());

    /// <summary>
    /// Posts a form to an endpoint named in discovery, optionally with HTTP Basic client authentication, through
    /// <paramref name="http"/> if given (say, one with a short timeout), else a new client of the server.
    /// </summary>
    public static async Task<HttpResponseMessage> PostFormAsync(ServerFixture server, string endpoint, IDictionary<string, string> form,
        TestClient? basicAuth = null, HttpClient? http = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync(endpoint))
        {
            Content = new FormUrlEncodedContent(form),
        };
        if (basicAuth is not null)
        {
            request.Headers.Authorization = BasicAuth(basicAuth);
        }

        return await (http ?? server.CreateClient()).SendAsync(request);
    }

    /// <summary>Calls userinfo with a bearer access token.</summary>
    public static async Task<HttpResponseMessage> UserInfoAsync(ServerFixture server, string accessToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, await server.EndpointAsync("userinfo_endpoint"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
        return await server.CreateClient().SendAsync(request);
    }

    /// <summary>Revokes a token (RFC 7009) as a public client.</summary>
    public static Task<HttpResponseMessage> RevokeAsync(ServerFixture server, TestClient client, string token, string? tokenTypeHint = null)
    {
        var form = new Dictionary<string, string> { ["client_id"] = client.ClientId, ["token"] = token };
        if (tokenTypeHint is not null)
        {
            form["token_type_hint"] = tokenTypeHint;
        }

        return PostFormAsync(server, "revocation_endpoint", form);
    }

    /// <summary>Introspects a token (RFC 7662) as a confidential client; returns the response JSON (status asserted 200).</summary>
    public static async Task<JsonElement> IntrospectAsync(ServerFixture server, TestClient caller, string token)
    {
        var response = await PostFormAsync(server, "introspection_endpoint", new Dictionary<string, string> { ["token"] = token }, caller);
        var json = await ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {json}");
        return json;
    }

    /// <summary>Pushes an authorization request (RFC 9126) for a public client; returns its request_uri.</summary>
    public static async Task<string> PushAsync(ServerFixture server, string clientId, IDictionary<string, string> parameters)
    {
        var form = new Dictionary<string, string>(parameters) { ["client_id"] = clientId };
        var response = await PostFormAsync(server, "pushed_authorization_request_endpoint", form);
        var json = await ReadJsonAsync(response);
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"{(int)response.StatusCode}: {json}");
        return json.GetProperty("request_uri").GetString()!;
    }

    /// <summary>
    /// Validates a JWT as a relying party or API would: signature against the JWKS published in discovery,
    /// the discovery issuer, the given audience and (optionally) the header <c>typ</c>.
    /// </summary>
    public static async Task<Microsoft.IdentityModel.Tokens.TokenValidationResult> ValidateJwtAsync(ServerFixture server, string token,
        string audience, string? type = null)
    {
        var jwks = new JsonWebKeySet(await server.CreateClient().GetStringAsync(await server.EndpointAsync("jwks_uri")));
        var parameters = new TokenValidationParameters
        {
            ValidIssuer = await server.EndpointAsync("issuer"),
            ValidAudience = audience,
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidateLifetime = true,
            RequireSignedTokens = true,
        };
        if (type is not null)
        {
            parameters.ValidTypes = [type];
        }

        return await new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler().ValidateTokenAsync(token, parameters);
    }
}
