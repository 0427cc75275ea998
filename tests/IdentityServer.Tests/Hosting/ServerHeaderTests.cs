using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>The real server process (Kestrel, which the in-memory test server is not) does not name itself to clients.</summary>
public sealed class ServerHeaderTests
{
    [Fact]
    public async Task Responses_carry_no_Server_header()
    {
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?> { ["ASPNETCORE_ENVIRONMENT"] = "Development" });
        using var http = server.CreateClient();

        foreach (var path in new[] { "/.well-known/openid-configuration", "/account/login", "/no-such-page" })
        {
            using var response = await http.GetAsync(path);
            Assert.NotEqual(HttpStatusCode.InternalServerError, response.StatusCode);
            Assert.False(response.Headers.Contains("Server"), $"{path} answered with Server: {string.Join(", ", response.Headers.Server)}");
        }
    }
}
