using System.Net;
using System.Net.Http.Headers;
using System.Text;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// An operator turning logging up to Trace to chase a problem must not find usable tokens in the logs: OpenIddict writes
/// every token it creates or validates there, whole, at Trace.
/// </summary>
public sealed class TokenFreeLoggingTests
{
    [Theory]
    [InlineData("Logging__LogLevel__OpenIddict")]
    [InlineData("Logging__Console__LogLevel__Default")]
    public async Task Issued_and_validated_tokens_stay_out_of_the_log_with_logging_at_Trace(string setting)
    {
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?> { [setting] = "Trace" });
        using var http = server.CreateClient();
        var discovery = await OAuth.ReadJsonAsync(await http.GetAsync("/.well-known/openid-configuration"));

        using var issued = await http.SendAsync(new HttpRequestMessage(HttpMethod.Post, discovery.GetProperty("token_endpoint").GetString())
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "api" }),
            Headers = { Authorization = Basic("demo-machine", "demo-machine-secret-change-me") },
        });
        var token = (await OAuth.ReadJsonAsync(issued)).GetProperty("access_token").GetString()!;
        using var introspected = await http.SendAsync(new HttpRequestMessage(HttpMethod.Post, discovery.GetProperty("introspection_endpoint").GetString())
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = token }),
            Headers = { Authorization = Basic("demo-api", "demo-api-secret-change-me") },
        });
        Assert.Equal(HttpStatusCode.OK, introspected.StatusCode);
        Assert.True((await OAuth.ReadJsonAsync(introspected)).GetProperty("active").GetBoolean());

        // OpenIddict's requests are logged (appsettings.json keeps it at Warning otherwise), its tokens are not: not even the signature.
        Assert.Contains("info: OpenIddict.Server", server.StandardOutput);
        Assert.DoesNotContain(token.Split('.')[2], server.Output);
        Assert.DoesNotContain("demo-machine-secret-change-me", server.Output);
    }

    private static AuthenticationHeaderValue Basic(string clientId, string secret) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{clientId}:{secret}")));
}
