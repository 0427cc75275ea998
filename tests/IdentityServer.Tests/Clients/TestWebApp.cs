using System.Net.Http.Headers;
using System.Security.Claims;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A server-side web app as our users would write one: cookies plus ASP.NET Core's stock OpenIdConnect handler
/// (code flow, PKCE, form_post, saved tokens, userinfo; PAR automatically, as discovery advertises it), hosted in
/// memory at <see cref="BaseAddress"/>. Its pages answer JSON so the tests can read what the app sees.
/// </summary>
public sealed class TestWebApp : IAsyncDisposable
{
    public static readonly Uri BaseAddress = new("https://webapp.test/");
    public static readonly string RedirectUri = new Uri(BaseAddress, "/signin-oidc").AbsoluteUri;
    public static readonly string PostLogoutRedirectUri = new Uri(BaseAddress, "/signout-callback-oidc").AbsoluteUri;

    /// <summary>A claim the app adds when the handler has read the userinfo endpoint: its <c>sub</c>.</summary>
    public const string UserInfoSubjectClaim = "test:userinfo_sub";

    private readonly WebApplication _app;

    private TestWebApp(WebApplication app) => _app = app;

    public static string Host => BaseAddress.Host;

    public static string Url(string path) => new Uri(BaseAddress, path).AbsoluteUri;

    public HttpMessageHandler CreateHandler() => _app.GetTestServer().CreateHandler();

    public static async Task<TestWebApp> StartAsync(ServerFixture server, TestClient client, IEnumerable<string> scopes, TestApi api)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = typeof(TestWebApp).Assembly.GetName().Name });
        builder.WebHost.UseTestServer();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddDataProtection().UseEphemeralDataProtectionProvider();
        builder.Services.AddAuthorization();
        builder.Services.AddAuthentication(options =>
            {
                options.DefaultScheme = CookieAuthenticationDefaults.AuthenticationScheme;
                options.DefaultChallengeScheme = OpenIdConnectDefaults.AuthenticationScheme;
            })
            .AddCookie()
            .AddOpenIdConnect(options =>
            {
                options.Authority = TestServerFactory.Authority.AbsoluteUri;
                options.ClientId = client.ClientId;
                options.ClientSecret = client.ClientSecret;
                options.ResponseType = OpenIdConnectResponseType.Code;
                options.UsePkce = true;
                options.SaveTokens = true;
                options.GetClaimsFromUserInfoEndpoint = true;
                options.Scope.Clear();
                foreach (var scope in scopes)
                {
                    options.Scope.Add(scope);
                }

                options.BackchannelHttpHandler = server.Factory.Server.CreateHandler();

                // Observation only: records that the handler read userinfo, and what it said.
                options.Events.OnUserInformationReceived = context =>
                {
                    if (context.User.RootElement.TryGetProperty("sub", out var sub) && context.Principal?.Identity is ClaimsIdentity identity)
                    {
                        identity.AddClaim(new Claim(UserInfoSubjectClaim, sub.GetString()!));
                    }

                    return Task.CompletedTask;
                };
            });

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();

        app.MapGet("/", () => Results.Json(new { page = "home" }));

        app.MapGet("/protected", (ClaimsPrincipal user) => Results.Json(new Dictionary<string, string?>
        {
            ["sub"] = First(user, "sub", ClaimTypes.NameIdentifier),
            ["name"] = First(user, "name", ClaimTypes.Name),
            ["email"] = First(user, "email", ClaimTypes.Email),
            ["userinfo_sub"] = First(user, UserInfoSubjectClaim),
        })).RequireAuthorization();

        // Calls the API with the access token the handler saved (or the one the last refresh stored).
        var apiHandler = api.CreateHandler();
        app.MapGet("/call-api", async (HttpContext context) =>
        {
            var accessToken = await context.GetTokenAsync("access_token");
            using var http = new HttpClient(apiHandler, disposeHandler: false);
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(new Uri("https://api.test/"), TestApi.WhoAmIPath));
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
            using var response = await http.SendAsync(request);
            return Results.Json(new Dictionary<string, object?>
            {
                ["api_status"] = (int)response.StatusCode,
                ["api_body"] = await response.Content.ReadAsStringAsync(),
                ["access_token"] = accessToken,
            });
        }).RequireAuthorization();

        // A plain refresh token request to the token endpoint (client_secret_post), storing the new tokens in the session.
        app.MapGet("/refresh", async (HttpContext context, IOptionsMonitor<OpenIdConnectOptions> monitor) =>
        {
            var session = await context.AuthenticateAsync(CookieAuthenticationDefaults.AuthenticationScheme);
            var properties = session.Properties!;
            var oidc = monitor.Get(OpenIdConnectDefaults.AuthenticationScheme);
            var configuration = await oidc.ConfigurationManager!.GetConfigurationAsync(context.RequestAborted);
            var oldRefreshToken = properties.GetTokenValue("refresh_token")!;
            using var response = await oidc.Backchannel.PostAsync(configuration.TokenEndpoint, new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "refresh_token",
                ["refresh_token"] = oldRefreshToken,
                ["client_id"] = oidc.ClientId!,
                ["client_secret"] = oidc.ClientSecret!,
            }), context.RequestAborted);
            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(context.RequestAborted)).RootElement.Clone();
            if (!response.IsSuccessStatusCode)
            {
                return Results.Json(new Dictionary<string, object?> { ["token_status"] = (int)response.StatusCode, ["token_body"] = json });
            }

            foreach (var name in new[] { "access_token", "refresh_token", "id_token" })
            {
                if (json.TryGetProperty(name, out var value))
                {
                    properties.UpdateTokenValue(name, value.GetString()!);
                }
            }

            await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme, session.Principal!, properties);
            return Results.Json(new Dictionary<string, object?>
            {
                ["token_status"] = (int)response.StatusCode,
                ["old_refresh_token"] = oldRefreshToken,
                ["new_refresh_token"] = properties.GetTokenValue("refresh_token"),
                ["new_access_token"] = properties.GetTokenValue("access_token"),
            });
        }).RequireAuthorization();

        app.MapGet("/signout", () => Results.SignOut(new AuthenticationProperties { RedirectUri = "/signed-out" },
            [CookieAuthenticationDefaults.AuthenticationScheme, OpenIdConnectDefaults.AuthenticationScheme]));

        app.MapGet("/signed-out", (ClaimsPrincipal user) => Results.Json(new Dictionary<string, object?>
        {
            ["page"] = "signed-out",
            ["signed_in"] = user.Identity?.IsAuthenticated == true,
        }));

        await app.StartAsync();
        return new TestWebApp(app);
    }

    private static string? First(ClaimsPrincipal user, params string[] types) =>
        types.Select(t => user.FindFirst(t)?.Value).FirstOrDefault(v => v is not null);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
