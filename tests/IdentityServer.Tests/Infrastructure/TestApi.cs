using System.Net.Http.Headers;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// A resource API as our users would write one: ASP.NET Core's stock JwtBearer handler configured with nothing
/// but the authority and its audience (plus the in-memory channel to the server). <c>GET /whoami</c> answers
/// 200 with the token's subject, client and audiences, or 401.
/// </summary>
public sealed class TestApi : IAsyncDisposable
{
    public const string WhoAmIPath = "/whoami";

    private readonly WebApplication _app;

    private TestApi(WebApplication app, string audience)
    {
        _app = app;
        Audience = audience;
    }

    public string Audience { get; }

    /// <summary>A unique audience (resource indicator) for one test's API.</summary>
    public static string NewAudience() => $"https://{Unique.Name("api")}.test";

    public static async Task<TestApi> StartAsync(ServerFixture server, string audience)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = typeof(TestApi).Assembly.GetName().Name });
        builder.WebHost.UseTestServer();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddDataProtection().UseEphemeralDataProtectionProvider();
        builder.Services.AddAuthorization();
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(options =>
        {
            options.Authority = TestServerFactory.Authority.AbsoluteUri;
            options.Audience = audience;
            options.BackchannelHttpHandler = server.Factory.Server.CreateHandler();
        });

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapGet(WhoAmIPath, (ClaimsPrincipal user) => Results.Json(new Dictionary<string, object?>
        {
            ["sub"] = (user.FindFirst("sub") ?? user.FindFirst(ClaimTypes.NameIdentifier))?.Value,
            ["client_id"] = user.FindFirst("client_id")?.Value,
            ["aud"] = user.FindAll("aud").Select(c => c.Value).ToArray(),
        })).RequireAuthorization();
        await app.StartAsync();
        return new TestApi(app, audience);
    }

    public HttpMessageHandler CreateHandler() => _app.GetTestServer().CreateHandler();

    /// <summary>Calls <c>/whoami</c> with <paramref name="accessToken"/> as a bearer token.</summary>
    public async Task<HttpResponseMessage> CallAsync(string accessToken)
    {
        using var client = _app.GetTestServer().CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, WhoAmIPath);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
        return await client.SendAsync(request);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
