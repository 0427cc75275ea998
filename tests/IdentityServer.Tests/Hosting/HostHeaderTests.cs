using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>A Host header that names no valid host is the caller's error, answered in each endpoint's own format.</summary>
public sealed class HostHeaderTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    /// <summary>Each passes Kestrel's check of the header, and none makes a URI.</summary>
    public static readonly TheoryData<string> InvalidHosts = ["localhost:65536", "a!b", "a..b", new string('a', 300)];

    [Theory]
    [MemberData(nameof(InvalidHosts))]
    public async Task A_host_header_naming_no_valid_host_is_a_400_not_a_server_error_or_the_login_page(string host)
    {
        using var http = new HttpClient(server.Factory.CreateReportingHandler()) { BaseAddress = TestServerFactory.Authority };

        using var token = await SendAsync(http, HttpMethod.Post, "/connect/token", host,
            new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials" }));
        using var userinfo = await SendAsync(http, HttpMethod.Get, "/connect/userinfo", host);
        using var discovery = await SendAsync(http, HttpMethod.Get, "/.well-known/openid-configuration", host);
        using var login = await SendAsync(http, HttpMethod.Get, "/account/login", host);

        foreach (var response in new[] { token, userinfo, discovery })
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
        }

        Assert.Equal(HttpStatusCode.BadRequest, login.StatusCode);
        Assert.Equal("text/html", login.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Something went wrong", await login.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// A label that is not valid punycode passes Kestrel too, but ASP.NET Core fails to decode it wherever the host is
    /// first read (a 500, logged with its stack trace). A real Kestrel: the in-memory test server reads the host itself.
    /// </summary>
    [Fact]
    public async Task A_host_header_that_is_not_valid_punycode_is_a_400_not_a_server_error()
    {
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?> { ["ASPNETCORE_ENVIRONMENT"] = "Development" });
        using var http = process.CreateClient();
        const string host = "xn--zz--";

        using var token = await SendAsync(http, HttpMethod.Post, "/connect/token", host,
            new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials" }));
        using var discovery = await SendAsync(http, HttpMethod.Get, "/.well-known/openid-configuration", host);
        using var login = await SendAsync(http, HttpMethod.Get, "/account/login", host);

        foreach (var response in new[] { token, discovery })
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
        }

        Assert.Equal(HttpStatusCode.BadRequest, login.StatusCode);
        Assert.Contains("Something went wrong", await login.Content.ReadAsStringAsync());
        Assert.DoesNotContain("Invalid IDN", process.Output);
    }

    private static Task<HttpResponseMessage> SendAsync(HttpClient http, HttpMethod method, string path, string host, HttpContent? content = null)
    {
        var request = new HttpRequestMessage(method, path) { Content = content };
        Assert.True(request.Headers.TryAddWithoutValidation("Host", host));
        return http.SendAsync(request);
    }
}
