using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// RFC 6749 3.1: a parameter sent more than once is refused with invalid_request naming it, never read as absent
/// (a state dropped, a prompt=login ignored, "response_type is missing"). At the authorization endpoint the error goes
/// back to the client once the client and redirect_uri are known, never echoing a repeated state; a repeated client_id
/// or redirect_uri cannot be trusted, so that error stays on our page. resource (RFC 8707) may be repeated.
/// </summary>
public abstract class RepeatedParameterTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_repeated_state_with_a_session_gets_invalid_request_with_no_state_and_no_code()
    {
        var (client, browser) = await SignedInAsync();
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(), extra: new Dictionary<string, string?> { ["state"] = "st" });

        var result = await AuthorizeErrorAsync(browser, url + "&state=evil");

        Assert.Equal("invalid_request", result["error"]);
        Assert.Contains("'state'", result["error_description"]);
        Assert.False(result.ContainsKey("state"), string.Join(", ", result));
    }

    [SkippableTheory]
    [InlineData("prompt", "none", "login")]
    [InlineData("prompt", "login", "login")]
    [InlineData("response_type", "code", "code")]
    [InlineData("code_challenge_method", "S256", "S256")]
    [InlineData("scope", "openid", "openid profile")]
    [InlineData("max_age", "0", "0")]
    [InlineData("nonce", "a", "b")]
    [InlineData("x_unknown", "a", "b")] // no parameter may be repeated, known or not
    public async Task A_repeated_parameter_is_sent_back_to_the_client_as_invalid_request_naming_it(string name, string first, string second)
    {
        var (client, browser) = await SignedInAsync();
        var state = Unique.Name("state");
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["state"] = state, [name] = first });

        var result = await AuthorizeErrorAsync(browser, QueryHelpers.AddQueryString(url, name, second));

        Assert.Equal("invalid_request", result["error"]);
        Assert.Contains($"'{name}'", result["error_description"]);
        Assert.Equal(state, result["state"]);
        Assert.Equal(await server.EndpointAsync("issuer"), result["iss"]);
    }

    /// <summary>A repeated parameter whose name reads as a sentence is not repeated on this server's error page (anyone may send one).</summary>
    [SkippableFact]
    public async Task A_repeated_parameter_named_like_a_sentence_is_not_quoted_on_the_error_page()
    {
        const string name = "Your account is suspended. Call 555-1234";
        var url = await OAuth.AuthorizeUrlAsync(server, Unique.Name("nobody"), "openid", Pkce.Create());

        var page = await server.CreateBrowser().NavigateAsync(QueryHelpers.AddQueryString(QueryHelpers.AddQueryString(url, name, "1"), name, "2"),
            stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.Equal(HttpStatusCode.BadRequest, page.Status);
        Assert.Contains("invalid_request", page.Body);
        Assert.DoesNotContain("suspended", page.Body);
    }

    [SkippableTheory]
    [InlineData("client_id")]
    [InlineData("redirect_uri")]
    public async Task A_repeated_client_id_or_redirect_uri_gets_the_error_page_and_no_redirect(string name)
    {
        var (client, browser) = await SignedInAsync();
        var url = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create());
        var value = name == "client_id" ? client.ClientId : OAuth.AppRedirectUri;

        var page = await browser.NavigateAsync(QueryHelpers.AddQueryString(url, name, value), stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
        Assert.Equal(HttpStatusCode.BadRequest, page.Status);
        Assert.Contains("invalid_request", page.Body);
        Assert.Contains($"&#x27;{name}&#x27;", page.Body);
    }

    [SkippableFact]
    public async Task A_repeated_parameter_in_a_form_posted_to_the_authorization_endpoint_is_refused_the_same_way()
    {
        var (client, browser) = await SignedInAsync();
        var pkce = Pkce.Create();
        var state = Unique.Name("state");
        var fields = new List<KeyValuePair<string, string>>
        {
            new("response_type", "code"), new("client_id", client.ClientId), new("redirect_uri", OAuth.AppRedirectUri),
            new("scope", "openid"), new("state", state), new("code_challenge", pkce.Challenge), new("code_challenge_method", "S256"),
            new("prompt", "none"), new("prompt", "login"),
        };

        var page = await browser.PostFormAsync(await server.EndpointAsync("authorization_endpoint"), fields, OAuth.IsApp);

        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.Equal("invalid_request", result["error"]);
        Assert.Contains("'prompt'", result["error_description"]);
        Assert.Equal(state, result["state"]);
    }

    public static TheoryData<string> Endpoints => ["token", "pushed authorization", "device authorization", "introspection", "revocation", "userinfo"];

    [SkippableTheory]
    [MemberData(nameof(Endpoints))]
    public async Task A_repeated_parameter_at_a_back_channel_endpoint_gets_invalid_request_naming_it(string endpoint)
    {
        var client = await server.CreatePublicClientAsync();
        var machine = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");
        var device = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.ApplicationType = "native";
            c.GrantTypes = ["urn:ietf:params:oauth:grant-type:device_code"];
            c.Scope = "openid profile";
        });
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, await server.CreateUserAsync(), "openid");
        var accessToken = tokens.GetProperty("access_token").GetString()!;
        var pkce = Pkce.Create();

        var (response, name) = endpoint switch
        {
            "token" => (await Post("token_endpoint", [new("grant_type", "client_credentials"), new("grant_type", "client_credentials")], machine), "grant_type"),
            "pushed authorization" => (await Post("pushed_authorization_request_endpoint",
            [
                new("client_id", client.ClientId), new("response_type", "code"), new("redirect_uri", OAuth.AppRedirectUri), new("scope", "openid"),
                new("code_challenge", pkce.Challenge), new("code_challenge_method", "S256"), new("state", "a"), new("state", "b"),
            ]), "state"),
            "device authorization" => (await Post("device_authorization_endpoint",
                [new("client_id", device.ClientId), new("scope", "openid"), new("scope", "profile")]), "scope"),
            "introspection" => (await Post("introspection_endpoint", [new("token", accessToken), new("token", accessToken)], machine), "token"),
            "revocation" => (await Post("revocation_endpoint", [new("client_id", client.ClientId), new("token", accessToken), new("token", "other")]), "token"),
            "userinfo" => (await UserInfoAsync(accessToken, "?claims_locales=en&claims_locales=fr"), "claims_locales"),
            _ => throw new ArgumentOutOfRangeException(nameof(endpoint)),
        };

        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {body}");
        if (endpoint == "userinfo")
        {
            // Userinfo errors are in the WWW-Authenticate header (RFC 6750 3).
            var challenge = response.Headers.WwwAuthenticate.ToString();
            Assert.Contains("error=\"invalid_request\"", challenge);
            Assert.Contains($"'{name}'", challenge);
        }
        else
        {
            var json = await OAuth.ReadJsonAsync(response);
            Assert.Equal("invalid_request", json.GetProperty("error").GetString());
            Assert.Contains($"'{name}'", json.GetProperty("error_description").GetString());
        }

        // Nothing was done: the token still works.
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, accessToken)).StatusCode);
    }

    [SkippableFact]
    public async Task A_repeated_parameter_at_the_end_session_endpoint_signs_out_nobody_unasked_and_redirects_nowhere()
    {
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, browser, client, await server.CreateUserAsync(), "openid");
        var url = QueryHelpers.AddQueryString(await server.EndpointAsync("end_session_endpoint"), new Dictionary<string, string?>
        {
            ["id_token_hint"] = tokens.GetProperty("id_token").GetString(),
            ["post_logout_redirect_uri"] = "https://app.test/signed-out",
            ["state"] = "a",
        });

        var page = await browser.NavigateAsync(url + "&state=b", stopAt: uri => uri.Host != TestServerFactory.Authority.Host);

        Assert.True(page.RedirectTarget is null, $"Redirected to {page.RedirectTarget}");
        Assert.Contains("invalid_request", page.Body);
        Assert.DoesNotContain("&#x27;state&#x27;", page.Body); // the code only: a description may carry the request's own words
        // Still signed in: the next authorization request gets a code without the login page.
        var again = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create()), OAuth.IsApp);
        Assert.True(again.RedirectTarget is not null && OAuth.QueryOf(again.RedirectTarget).ContainsKey("code"), $"{(int)again.Status} at {again.Uri}");
    }

    /// <summary>resource is defined as repeatable (RFC 8707): it is not refused for being sent more than once.</summary>
    [SkippableFact]
    public async Task A_repeated_resource_is_not_refused_as_repeated()
    {
        var machine = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");

        var response = await Post("token_endpoint",
            [new("grant_type", "client_credentials"), new("resource", "https://a.test/"), new("resource", "https://b.test/")], machine);

        // Read as a list and judged on its values (no resource is registered here), not refused as repeated.
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_target", json.GetProperty("error").GetString());
    }

    private async Task<(TestClient Client, Browser Browser)> SignedInAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, await server.CreateUserAsync(), "openid");
        return (client, browser);
    }

    private static async Task<Dictionary<string, string>> AuthorizeErrorAsync(Browser browser, string url)
    {
        var page = await browser.NavigateAsync(url, OAuth.IsApp);
        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget),
            $"Expected an error sent back to the app, got {(int)page.Status} at {page.Uri}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.False(result.ContainsKey("code"), string.Join(", ", result));
        return result;
    }

    /// <summary>Posts fields as given, a name repeated if it is listed twice (FormUrlEncodedContent keeps duplicates).</summary>
    /// <summary>
    /// Checked before OpenIddict takes the credentials from the request: a repeated client_secret next to Basic
    /// credentials read as absent there, so the request passed, where a single one is refused as a second set.
    /// </summary>
    [SkippableFact]
    public async Task A_repeated_client_secret_next_to_basic_credentials_is_refused()
    {
        var machine = await server.CreateConfidentialClientAsync(c => c.Scope = "openid");

        var response = await Post("token_endpoint",
            [new("grant_type", "client_credentials"), new("client_secret", "x"), new("client_secret", "y")], machine);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_request", json.GetProperty("error").GetString());
        Assert.Contains("'client_secret'", json.GetProperty("error_description").GetString());
    }

    private async Task<HttpResponseMessage> Post(string endpoint, KeyValuePair<string, string>[] fields, TestClient? basicAuth = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync(endpoint)) { Content = new FormUrlEncodedContent(fields) };
        if (basicAuth is not null)
        {
            request.Headers.Authorization = OAuth.BasicAuth(basicAuth);
        }

        return await server.CreateClient().SendAsync(request);
    }

    private async Task<HttpResponseMessage> UserInfoAsync(string accessToken, string query)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, await server.EndpointAsync("userinfo_endpoint") + query);
        request.Headers.Authorization = new("Bearer", accessToken);
        return await server.CreateClient().SendAsync(request);
    }
}

public sealed class SqliteRepeatedParameterTests(SqliteServerFixture server)
    : RepeatedParameterTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlRepeatedParameterTests(PostgreSqlServerFixture server)
    : RepeatedParameterTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
