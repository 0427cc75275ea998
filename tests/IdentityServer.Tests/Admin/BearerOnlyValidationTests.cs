using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Validation.AspNetCore;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// OpenIddict's API token validation takes part only in requests that carry a bearer token (the admin API's callers);
/// token requests and everything else go without it. Observed on a second instance on the fixture's database, whose
/// outermost middleware records, after each request, whether the validation started its transaction.
/// </summary>
public sealed class BearerOnlyValidationTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    [SkippableFact]
    public async Task Only_a_request_with_a_bearer_token_runs_the_API_token_validation()
    {
        var validated = new ConcurrentDictionary<string, bool>();
        await using var observed = server.Factory.WithWebHostBuilder(web => web.ConfigureTestServices(services =>
            services.AddSingleton<IStartupFilter>(new ValidationObserver(validated))));
        var http = observed.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");

        using var tokenRequest = new HttpRequestMessage(HttpMethod.Post, "/connect/token")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "admin" }),
        };
        tokenRequest.Headers.Authorization = OAuth.BasicAuth(client);
        var tokenResponse = await http.SendAsync(tokenRequest);
        var token = (await OAuth.ReadJsonAsync(tokenResponse)).GetProperty("access_token").GetString()!;

        var anonymous = await http.GetAsync(ClientsUrl);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var withBearer = await http.GetAsync(ClientsUrl);

        Assert.False(validated["/connect/token"]);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal(HttpStatusCode.OK, withBearer.StatusCode);
        Assert.True(validated[ClientsUrl]);
    }

    /// <summary>Records, for each request path, whether OpenIddict's validation started a transaction in it.</summary>
    private sealed class ValidationObserver(ConcurrentDictionary<string, bool> validated) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (context, following) =>
            {
                await following(context);
                validated[context.Request.Path] = context.Features.Get<OpenIddictValidationAspNetCoreFeature>() is not null;
            });
            next(app);
        };
    }
}
