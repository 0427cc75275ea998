using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Playwright;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// An application's authorization code flow (PKCE, state, nonce) as the real-browser tests run it against a server
/// process at <paramref name="origin"/>: the browser goes to <see cref="AuthorizeUrl"/>, the test signs in, and the
/// code arrives at the application's redirect URI, which is not there (the browser's request to it is what counts).
/// </summary>
public sealed class BrowserCodeFlow(string origin, string clientId, string redirectUri, string scope)
{
    private readonly Pkce _pkce = Pkce.Create();
    private readonly string _state = Unique.Name("state");

    public string AuthorizeUrl => QueryHelpers.AddQueryString($"{origin}/connect/authorize", new Dictionary<string, string?>
    {
        ["response_type"] = "code", ["client_id"] = clientId, ["redirect_uri"] = redirectUri, ["scope"] = scope,
        ["state"] = _state, ["nonce"] = Unique.Name("nonce"), ["code_challenge"] = _pkce.Challenge, ["code_challenge_method"] = "S256",
    });

    /// <summary>
    /// Runs <paramref name="finishSignIn"/> (the click that ends the sign-in) and waits for the browser's request to the
    /// redirect URI; returns its code once its state is checked. On a timeout, fails with the page and <paramref name="logs"/>.
    /// </summary>
    public async Task<string> CodeAfterAsync(IPage page, Func<Task> finishSignIn, Func<string> logs)
    {
        IRequest? redirect = null;
        try
        {
            redirect = await page.RunAndWaitForRequestAsync(finishSignIn,
                request => request.Url.StartsWith(redirectUri, StringComparison.Ordinal), new() { Timeout = 15_000 });
        }
        catch (TimeoutException)
        {
            Assert.Fail($"No redirect to the application; at {page.Url}:\n{await page.InnerTextAsync("main")}\n{logs()}");
        }

        var callback = QueryHelpers.ParseQuery(new Uri(redirect!.Url).Query);
        Assert.Equal(_state, callback["state"].ToString());
        return callback["code"].ToString();
    }

    /// <summary>Redeems the code at the token endpoint as the (public) application; returns the identity token's claims.</summary>
    public async Task<JsonElement> RedeemForIdentityTokenAsync(string code)
    {
        using var http = new HttpClient { BaseAddress = new Uri(origin) };
        var response = await http.PostAsync("/connect/token", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["client_id"] = clientId, ["code"] = code,
            ["redirect_uri"] = redirectUri, ["code_verifier"] = _pkce.Verifier,
        }));
        var tokens = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.IsSuccessStatusCode, tokens.ToString());
        return Jwt.Payload(tokens.GetProperty("id_token").GetString()!);
    }
}
