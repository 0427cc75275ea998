using System.Net.Http.Json;
using System.Text.Json;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// Protocol steps against any server reached through an <see cref="HttpClient"/> (a second in-memory host, a real
/// process), reading endpoints from that server's own discovery document.
/// </summary>
public static class HttpProtocol
{
    public static Task<JsonElement> DiscoverAsync(HttpClient http) =>
        http.GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");

    public static async Task<string> EndpointAsync(HttpClient http, string name) =>
        (await DiscoverAsync(http)).GetProperty(name).GetString()!;

    /// <summary>A client_credentials request with HTTP Basic client authentication, sent to <paramref name="tokenEndpoint"/> or the discovered one.</summary>
    public static async Task<HttpResponseMessage> ClientCredentialsAsync(HttpClient http, string clientId, string clientSecret,
        string? scope = null, string? tokenEndpoint = null)
    {
        var form = new Dictionary<string, string> { ["grant_type"] = "client_credentials" };
        if (scope is not null)
        {
            form["scope"] = scope;
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, tokenEndpoint ?? await EndpointAsync(http, "token_endpoint"))
        {
            Content = new FormUrlEncodedContent(form),
        };
        request.Headers.Authorization = OAuth.BasicAuth(new TestClient(clientId, clientSecret, new()));
        return await http.SendAsync(request);
    }
}
