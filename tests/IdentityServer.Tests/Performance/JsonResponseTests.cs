using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Performance;

/// <summary>
/// Token and introspection responses are written into pooled buffers that grow as the document does: a response
/// larger than the first buffer (4 KiB) must still arrive whole, with its length and content type.
/// </summary>
public abstract class JsonResponseTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task Token_and_introspection_responses_larger_than_the_first_buffer_arrive_whole()
    {
        // Forty long audiences make a token of about 6 KB, and an introspection response of about 5 KB.
        var audiences = Enumerable.Range(0, 40).Select(i => $"https://{new string('a', 80)}.example/api/{i}").ToArray();
        var scope = await server.CreateScopeAsync(audiences);
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);

        var tokenResponse = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!,
            scope, await server.EndpointAsync("token_endpoint"));
        var tokenBody = await AssertWholeJsonAsync(tokenResponse, minimumLength: 4096);
        var accessToken = tokenBody.GetProperty("access_token").GetString()!;
        Assert.Equal(audiences, Jwt.Strings(Jwt.Payload(accessToken).GetProperty("aud")));
        var validation = await OAuth.ValidateJwtAsync(server, accessToken, audience: audiences[^1], type: "at+jwt");
        Assert.True(validation.IsValid, validation.Exception?.ToString());

        var introspection = await OAuth.PostFormAsync(server, "introspection_endpoint",
            new Dictionary<string, string> { ["token"] = accessToken }, client);
        var introspected = await AssertWholeJsonAsync(introspection, minimumLength: 4096);
        Assert.True(introspected.GetProperty("active").GetBoolean(), introspected.ToString());
        Assert.Equal(audiences, Jwt.Strings(introspected.GetProperty("aud")));
    }

    private static async Task<JsonElement> AssertWholeJsonAsync(HttpResponseMessage response, int minimumLength)
    {
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {System.Text.Encoding.UTF8.GetString(bytes)}");
        Assert.Equal("application/json; charset=UTF-8", response.Content.Headers.ContentType?.ToString());
        Assert.Equal(bytes.Length, response.Content.Headers.ContentLength);
        Assert.True(bytes.Length > minimumLength, $"Only {bytes.Length} bytes: the test no longer exercises a grown buffer.");
        return JsonDocument.Parse(bytes).RootElement.Clone();
    }
}

public sealed class SqliteJsonResponseTests(SqliteServerFixture server)
    : JsonResponseTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlJsonResponseTests(PostgreSqlServerFixture server)
    : JsonResponseTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
