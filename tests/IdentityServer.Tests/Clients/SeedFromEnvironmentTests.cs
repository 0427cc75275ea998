using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// The seed given as environment variables (<c>Seed__Clients__0__client_id=...</c>) to the real server process,
/// each process on its own temporary SQLite file and loopback port.
/// </summary>
public sealed class SeedFromEnvironmentTests
{
    private static async Task<JsonElement> TokenAsync(HttpResponseMessage response)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        return json;
    }

    [Fact]
    public async Task In_Development_a_client_seeded_from_environment_variables_gets_a_token_over_plain_http()
    {
        // In Development the repository's file seeds the demo entries first, and configuration merges arrays by
        // index, so these entries go after them.
        var seed = Repository.DevelopmentSeed();
        var c = seed.GetProperty("Clients").GetArrayLength();
        var s = seed.GetProperty("Scopes").GetArrayLength();
        var clientId = Unique.Name("env-client");
        var secret = Unique.Secret();
        var scope = Unique.Name("env-scope");
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Development",
            [$"Seed__Scopes__{s}__name"] = scope,
            [$"Seed__Scopes__{s}__resources__0"] = "https://env-api.test",
            [$"Seed__Clients__{c}__client_id"] = clientId,
            [$"Seed__Clients__{c}__client_secret"] = secret,
            [$"Seed__Clients__{c}__grant_types__0"] = "client_credentials",
            [$"Seed__Clients__{c}__scope"] = scope,
        });
        using var http = server.CreateClient();

        var tokens = await TokenAsync(await HttpProtocol.ClientCredentialsAsync(http, clientId, secret, scope));

        var payload = Jwt.Payload(tokens.GetProperty("access_token").GetString()!);
        Assert.Equal(clientId, payload.GetProperty("client_id").GetString());
        Assert.Equal("https://env-api.test", payload.GetProperty("aud").GetString());
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);
    }

    [Fact]
    public async Task In_Production_behind_a_TLS_proxy_the_documented_environment_variable_seed_works_and_nothing_demo_is_seeded()
    {
        var clientId = Unique.Name("env-client");
        var secret = Unique.Secret();
        await using var server = await ServerProcess.StartHealthyAsync(new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["Hosting__TlsTerminatedByProxy"] = "true",
            ["Seed__Clients__0__client_id"] = clientId,
            ["Seed__Clients__0__client_secret"] = secret,
            ["Seed__Clients__0__grant_types__0"] = "client_credentials",
        });
        // What the proxy forwards: the client's https request, sent on to the server over plain http.
        using var proxied = server.CreateClient();
        proxied.DefaultRequestHeaders.Add("X-Forwarded-Proto", "https");
        var discovered = new Uri(await HttpProtocol.EndpointAsync(proxied, "token_endpoint"));
        Assert.Equal(Uri.UriSchemeHttps, discovered.Scheme);
        var tokenEndpoint = new Uri(server.BaseAddress, discovered.PathAndQuery).ToString();

        await TokenAsync(await HttpProtocol.ClientCredentialsAsync(proxied, clientId, secret, tokenEndpoint: tokenEndpoint));

        // Plain http that did not come through the TLS proxy is refused.
        using var direct = server.CreateClient();
        var refused = await HttpProtocol.ClientCredentialsAsync(direct, clientId, secret, tokenEndpoint: tokenEndpoint);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(refused)).GetProperty("error").GetString());

        var machine = Repository.DevelopmentClient("demo-machine");
        var demo = await HttpProtocol.ClientCredentialsAsync(proxied, "demo-machine", machine.GetProperty("client_secret").GetString()!, tokenEndpoint: tokenEndpoint);
        Assert.Equal(HttpStatusCode.Unauthorized, demo.StatusCode);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(demo)).GetProperty("error").GetString());
    }
}
