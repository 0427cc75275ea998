using System.Net;
using System.Text.Json.Nodes;
using IdentityServer.Tests.Infrastructure;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A machine client gets an access token with client credentials, and a resource API on the stock JwtBearer
/// handler (authority and audience only) accepts it, and refuses it once tampered with or meant for another API.
/// </summary>
public abstract class ClientCredentialsTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_stock_JwtBearer_api_accepts_a_client_credentials_token_for_its_audience()
    {
        await using var api = await TestApi.StartAsync(server, TestApi.NewAudience());
        var (client, scope) = await CreateMachineClientAsync(api.Audience);

        var token = await GetTokenAsync(client, scope);
        var response = await api.CallAsync(token);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var whoami = await OAuth.ReadJsonAsync(response);
        Assert.Equal(client.ClientId, whoami.GetProperty("sub").GetString());
        Assert.Equal(client.ClientId, whoami.GetProperty("client_id").GetString());
        Assert.Equal([api.Audience], whoami.GetProperty("aud").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("at+jwt", Jwt.Header(token).GetProperty("typ").GetString());
        Assert.Equal("RS256", Jwt.Header(token).GetProperty("alg").GetString());
    }

    [SkippableFact]
    public async Task A_token_with_a_flipped_signature_character_is_refused()
    {
        await using var api = await TestApi.StartAsync(server, TestApi.NewAudience());
        var (client, scope) = await CreateMachineClientAsync(api.Audience);
        var token = await GetTokenAsync(client, scope);
        Assert.Equal(HttpStatusCode.OK, (await api.CallAsync(token)).StatusCode);

        // A character in the middle of the signature (the last one may only carry padding bits).
        var parts = token.Split('.');
        var signature = parts[2].ToCharArray();
        var middle = signature.Length / 2;
        signature[middle] = signature[middle] == 'A' ? 'B' : 'A';
        var tampered = $"{parts[0]}.{parts[1]}.{new string(signature)}";

        Assert.Equal(HttpStatusCode.Unauthorized, (await api.CallAsync(tampered)).StatusCode);
    }

    [SkippableFact]
    public async Task A_token_with_a_changed_payload_is_refused()
    {
        await using var api = await TestApi.StartAsync(server, TestApi.NewAudience());
        var (client, scope) = await CreateMachineClientAsync(api.Audience);
        var token = await GetTokenAsync(client, scope);
        var (other, _) = await CreateMachineClientAsync(api.Audience);
        Assert.Equal(HttpStatusCode.OK, (await api.CallAsync(token)).StatusCode);

        // Well-formed JSON claiming to be another client, under the original header and signature.
        var parts = token.Split('.');
        var payload = JsonNode.Parse(Base64UrlEncoder.Decode(parts[1]))!.AsObject();
        payload["sub"] = other.ClientId;
        payload["client_id"] = other.ClientId;
        var tampered = $"{parts[0]}.{Base64UrlEncoder.Encode(payload.ToJsonString())}.{parts[2]}";

        Assert.Equal(HttpStatusCode.Unauthorized, (await api.CallAsync(tampered)).StatusCode);
    }

    [SkippableFact]
    public async Task An_unsigned_token_is_refused()
    {
        await using var api = await TestApi.StartAsync(server, TestApi.NewAudience());
        var (client, scope) = await CreateMachineClientAsync(api.Audience);
        var token = await GetTokenAsync(client, scope);
        Assert.Equal(HttpStatusCode.OK, (await api.CallAsync(token)).StatusCode);

        var header = Base64UrlEncoder.Encode("""{"alg":"none","typ":"at+jwt"}""");
        var unsigned = $"{header}.{token.Split('.')[1]}.";

        Assert.Equal(HttpStatusCode.Unauthorized, (await api.CallAsync(unsigned)).StatusCode);
    }

    [SkippableFact]
    public async Task A_token_for_another_audience_is_refused()
    {
        await using var api = await TestApi.StartAsync(server, TestApi.NewAudience());
        var (client, otherScope) = await CreateMachineClientAsync(TestApi.NewAudience());

        var token = await GetTokenAsync(client, otherScope);
        Assert.NotEqual(api.Audience, Jwt.Payload(token).GetProperty("aud").GetString());

        Assert.Equal(HttpStatusCode.Unauthorized, (await api.CallAsync(token)).StatusCode);
    }

    [SkippableFact]
    public async Task A_machine_client_cannot_get_a_token_with_a_wrong_secret()
    {
        var (client, scope) = await CreateMachineClientAsync(TestApi.NewAudience());

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["scope"] = scope,
        }, client with { ClientSecret = Unique.Secret() });

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_client_credentials_request_without_client_authentication_is_invalid_client(bool withClientId)
    {
        var (client, scope) = await CreateMachineClientAsync(TestApi.NewAudience());
        var form = new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = scope };
        if (withClientId)
        {
            form["client_id"] = client.ClientId;
        }

        var response = await OAuth.PostTokenAsync(server, form);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    /// <summary>
    /// A client credentials grant has no user: openid is invalid_scope for a machine client not registered with it
    /// (which other grants need no registration for); one that is gets its token, without openid: no identity token.
    /// </summary>
    [SkippableFact]
    public async Task Openid_in_a_client_credentials_request_needs_the_client_to_be_registered_with_it()
    {
        var (client, scope) = await CreateMachineClientAsync(TestApi.NewAudience());
        var form = new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = $"openid {scope}" };

        var refused = await OAuth.PostTokenAsync(server, form, client);
        var refusal = await OAuth.ReadJsonAsync(refused);
        Assert.True(refused.StatusCode == HttpStatusCode.BadRequest, refusal.ToString());
        Assert.Equal("invalid_scope", refusal.GetProperty("error").GetString());

        var registered = await server.CreateConfidentialClientAsync(c => c.Scope = $"openid {scope}");
        var granted = await OAuth.PostTokenAsync(server, form, registered);
        var json = await OAuth.ReadJsonAsync(granted);
        Assert.True(granted.IsSuccessStatusCode, json.ToString());
        Assert.Equal(scope, json.GetProperty("scope").GetString());
        Assert.False(json.TryGetProperty("id_token", out _), json.ToString());
    }

    /// <summary>
    /// A machine's token names its client as subject (RFC 9068 2.2); a client whose id an administrator made the same as
    /// a user's id must not read that user's claims at userinfo with it (RFC 9700 2.6).
    /// </summary>
    [SkippableFact]
    public async Task A_machine_token_whose_subject_is_also_a_user_id_reads_no_user_at_userinfo()
    {
        var user = await server.CreateUserAsync();
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var client = await server.CreateConfidentialClientAsync(c =>
        {
            c.ClientId = user.Id;
            c.Scope = $"openid {scope}";
        });
        var token = await GetTokenAsync(client, $"openid {scope}");
        Assert.Equal(user.Id, Jwt.Payload(token).GetProperty("sub").GetString());

        var userinfo = await OAuth.UserInfoAsync(server, token);

        Assert.Equal(HttpStatusCode.Forbidden, userinfo.StatusCode);
        Assert.Contains("insufficient_scope", userinfo.Headers.WwwAuthenticate.ToString());
        Assert.DoesNotContain(user.UserName, await userinfo.Content.ReadAsStringAsync());
    }

    private async Task<(TestClient Client, string Scope)> CreateMachineClientAsync(string audience)
    {
        var scope = await server.CreateScopeAsync(audience);
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        return (client, scope);
    }

    private async Task<string> GetTokenAsync(TestClient client, string scope)
    {
        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["scope"] = scope,
        }, client);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        Assert.False(json.TryGetProperty("refresh_token", out _), "Client credentials must not yield a refresh token.");
        Assert.False(json.TryGetProperty("id_token", out _), "Client credentials must not yield an id token.");
        return json.GetProperty("access_token").GetString()!;
    }
}

public sealed class SqliteClientCredentialsTests(SqliteServerFixture server)
    : ClientCredentialsTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlClientCredentialsTests(PostgreSqlServerFixture server) : ClientCredentialsTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
