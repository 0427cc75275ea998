using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// Behind a TLS-terminating proxy the server believes <c>X-Forwarded-Proto</c> and <c>X-Forwarded-For</c> only from
/// the configured proxies and networks, and says at start when it believes them from anyone.
/// </summary>
public sealed class ForwardedHeadersTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    /// <summary>HSTS is sent only over HTTPS, so it shows whether the forwarded scheme was believed.</summary>
    [SkippableFact]
    public async Task Forwarded_headers_are_believed_from_a_known_network_and_ignored_from_elsewhere()
    {
        await using var proxied = server.StartServer(new Dictionary<string, string?>
        {
            ["Hosting:TlsTerminatedByProxy"] = "true",
            ["Hosting:KnownNetworks:0"] = "10.1.0.0/16",
        });

        Task<HttpContext> RequestFromAsync(string peer) => proxied.Server.SendAsync(context =>
        {
            context.Connection.RemoteIpAddress = IPAddress.Parse(peer);
            context.Request.Method = HttpMethods.Get;
            context.Request.Scheme = "http";
            context.Request.Host = new HostString("id.example.test");
            context.Request.Path = "/health";
            context.Request.Headers["X-Forwarded-Proto"] = "https";
            context.Request.Headers["X-Forwarded-For"] = "203.0.113.7";
        });

        var fromProxy = await RequestFromAsync("10.1.2.3");
        var fromElsewhere = await RequestFromAsync("192.0.2.9");

        Assert.Equal(StatusCodes.Status200OK, fromProxy.Response.StatusCode);
        Assert.True(fromProxy.Response.Headers.ContainsKey("Strict-Transport-Security"), "The proxy's forwarded scheme was not believed.");
        Assert.Equal(IPAddress.Parse("203.0.113.7"), fromProxy.Connection.RemoteIpAddress);
        Assert.Equal(StatusCodes.Status200OK, fromElsewhere.Response.StatusCode);
        Assert.False(fromElsewhere.Response.Headers.ContainsKey("Strict-Transport-Security"), "A stranger's forwarded scheme was believed.");
        Assert.Equal(IPAddress.Parse("192.0.2.9"), fromElsewhere.Connection.RemoteIpAddress);
    }

    [Fact]
    public async Task Trusting_forwarded_headers_from_anyone_is_a_warning_at_start()
    {
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["Hosting__TlsTerminatedByProxy"] = "true",
        });

        await Eventually.TrueAsync(() => Task.FromResult(process.StandardOutput.Contains("[9005]", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), "warning 9005 in the server's output");

        Assert.Contains("trusted from any sender", process.StandardOutput);
        // Nor is any public address configured: emailed links would follow the Host header.
        Assert.Contains("[9006]", process.StandardOutput);
    }

    [Fact]
    public async Task With_a_configured_issuer_emailed_links_raise_no_warning_at_start()
    {
        await using var process = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["Hosting__TlsTerminatedByProxy"] = "true",
            ["Tokens__Issuer"] = "https://login.example/",
        });

        // Warning 9006 would come before 9005, which is logged at the same point of the start.
        await Eventually.TrueAsync(() => Task.FromResult(process.StandardOutput.Contains("[9005]", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), "warning 9005 in the server's output");

        Assert.DoesNotContain("[9006]", process.StandardOutput);
    }
}
