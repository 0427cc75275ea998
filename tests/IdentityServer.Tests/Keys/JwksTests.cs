using System.Text.Json;
using IdentityServer.Data;
using IdentityServer.Keys;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Keys;

public abstract class JwksTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    /// <summary>Private or symmetric key members (RFC 7518 section 6.3.2 and 6.4) that must never be published.</summary>
    public static readonly TheoryData<string> SecretMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

    private async Task<JsonElement[]> KeysAsync()
    {
        var jwks = await OAuth.ReadJsonAsync(await server.CreateClient().GetAsync(await server.EndpointAsync("jwks_uri")));
        var keys = jwks.GetProperty("keys").EnumerateArray().ToArray();
        Assert.NotEmpty(keys);
        return keys;
    }

    [SkippableFact]
    public async Task Every_published_key_is_a_public_RS256_signing_key()
    {
        foreach (var key in await KeysAsync())
        {
            Assert.Equal("RSA", key.GetProperty("kty").GetString());
            Assert.Equal("RS256", key.GetProperty("alg").GetString());
            Assert.Equal("sig", key.GetProperty("use").GetString());
            Assert.False(string.IsNullOrEmpty(key.GetProperty("kid").GetString()), key.ToString());
            Assert.False(string.IsNullOrEmpty(key.GetProperty("n").GetString()), key.ToString());
            Assert.Equal("AQAB", key.GetProperty("e").GetString());
        }
    }

    [SkippableTheory]
    [MemberData(nameof(SecretMembers))]
    public async Task No_published_key_carries_private_or_symmetric_material(string member)
    {
        foreach (var key in await KeysAsync())
        {
            Assert.False(key.TryGetProperty(member, out _), $"The JWKS publishes '{member}': {key}");
            Assert.NotEqual("oct", key.GetProperty("kty").GetString());
        }
    }

    [SkippableFact]
    public async Task The_encryption_key_is_not_published()
    {
        string encryptionKeyId;
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            encryptionKeyId = await db.StoredKeys.Where(k => k.Use == StoredKey.EncryptionUse).Select(k => k.Id).FirstAsync();
        }

        Assert.DoesNotContain(encryptionKeyId, (await KeysAsync()).Select(k => k.GetProperty("kid").GetString()));
    }

    [SkippableFact]
    public async Task Access_tokens_are_signed_with_a_published_key()
    {
        var client = await server.CreateConfidentialClientAsync();
        var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());

        var header = Jwt.Header(json.GetProperty("access_token").GetString()!);
        Assert.Equal("RS256", header.GetProperty("alg").GetString());
        Assert.Contains(header.GetProperty("kid").GetString(), (await KeysAsync()).Select(k => k.GetProperty("kid").GetString()));
    }
}

public sealed class SqliteJwksTests(SqliteServerFixture server) : JwksTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlJwksTests(PostgreSqlServerFixture server) : JwksTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
