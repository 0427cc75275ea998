using System.Net;
using IdentityServer.Keys;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Performance;

/// <summary>Discovery and the JWKS are served from memory with Cache-Control and an ETag, and never outlive a key change.</summary>
public abstract class ProtocolDocumentCacheTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    public static readonly TheoryData<string> Documents = ["/.well-known/openid-configuration", "/.well-known/jwks"];

    [SkippableTheory]
    [MemberData(nameof(Documents))]
    public async Task The_document_carries_Cache_Control_and_an_ETag_and_a_matching_If_None_Match_gets_304(string path)
    {
        var http = server.CreateClient();
        var first = await http.GetAsync(path);
        var second = await http.GetAsync(path);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(await first.Content.ReadAsStringAsync(), await second.Content.ReadAsStringAsync());
        Assert.True(first.Headers.CacheControl is { Public: true }, first.Headers.CacheControl?.ToString());
        Assert.Equal(TimeSpan.FromHours(1), first.Headers.CacheControl?.MaxAge);
        var etag = first.Headers.ETag ?? throw new Xunit.Sdk.XunitException("no ETag");
        Assert.Equal(etag, second.Headers.ETag);
        Assert.Equal("nosniff", string.Join(",", second.Headers.GetValues("X-Content-Type-Options")));
        // The cached answer has no CORS headers, so caches must keep it apart from answers to CORS requests.
        Assert.Contains("Origin", first.Headers.Vary);

        using var conditional = new HttpRequestMessage(HttpMethod.Get, path);
        conditional.Headers.IfNoneMatch.Add(etag);
        var notModified = await http.SendAsync(conditional);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
        Assert.Empty(await notModified.Content.ReadAsByteArrayAsync());

        // Compared weakly, as RFC 9110 says for If-None-Match: a compressing proxy may have weakened the tag.
        using var weak = new HttpRequestMessage(HttpMethod.Get, path);
        weak.Headers.IfNoneMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue(etag.Tag, isWeak: true));
        Assert.Equal(HttpStatusCode.NotModified, (await http.SendAsync(weak)).StatusCode);

        using var stale = new HttpRequestMessage(HttpMethod.Get, path);
        stale.Headers.IfNoneMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue("\"something-else\""));
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(stale)).StatusCode);
    }

    /// <summary>
    /// A client that cached the JWKS just before a new key appeared must fetch it again before that key signs. With keys
    /// published less than an hour ahead, the documents may be kept for that lead less one key check (the longest another
    /// instance takes to publish the key), not for the usual hour.
    /// </summary>
    [SkippableFact]
    public async Task With_keys_published_less_than_an_hour_ahead_the_documents_are_kept_no_longer_than_a_new_key_waits()
    {
        await using var configured = server.StartServer(new Dictionary<string, string?>
        {
            ["Keys:PublishAhead"] = "00:10:00",
            ["Keys:CheckInterval"] = "00:01:00",
        });
        var http = configured.CreateClient(new() { BaseAddress = TestServerFactory.Authority });

        foreach (var path in new[] { "/.well-known/openid-configuration", "/.well-known/jwks" })
        {
            var answer = await http.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            Assert.Equal(TimeSpan.FromMinutes(9), answer.Headers.CacheControl?.MaxAge);
        }
    }

    [SkippableFact]
    public async Task After_a_rotation_the_JWKS_served_has_the_new_key_and_another_ETag()
    {
        var http = server.CreateClient();
        var before = await http.GetAsync("/.well-known/jwks");

        var active = await server.Factory.Services.GetRequiredService<KeyRing>().RotateNowAsync(default);
        var after = await http.GetAsync("/.well-known/jwks");

        Assert.Contains(active.KeyId, await after.Content.ReadAsStringAsync());
        Assert.DoesNotContain(active.KeyId, await before.Content.ReadAsStringAsync());
        Assert.NotEqual(before.Headers.ETag, after.Headers.ETag);
    }

    [SkippableFact]
    public async Task Discovery_names_the_issuer_of_the_address_it_was_asked_at()
    {
        var http = server.CreateClient();
        var plain = await HttpProtocol.DiscoverAsync(http);
        using var other = new HttpRequestMessage(HttpMethod.Get, "https://other.example/.well-known/openid-configuration");
        var otherHost = await OAuth.ReadJsonAsync(await http.SendAsync(other));

        Assert.Equal("https://localhost/", plain.GetProperty("issuer").GetString());
        Assert.Equal("https://other.example/", otherHost.GetProperty("issuer").GetString());
    }

    /// <summary>
    /// OpenIddict builds discovery's endpoint addresses from the address asked, even with a configured issuer: an
    /// answer made for one Host header must never be served for another. With a configured issuer only the issuer's
    /// own address is cached, so made-up hosts asked first neither poison its document nor take the cache's places.
    /// </summary>
    [SkippableFact]
    public async Task With_a_configured_issuer_a_made_up_host_never_changes_the_issuers_discovery_document()
    {
        await using var configured = server.StartServer(new Dictionary<string, string?> { ["Tokens:Issuer"] = "https://localhost/" });
        var http = configured.CreateClient();

        for (var i = 0; i < 40; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"https://made-up-{i}.example/.well-known/openid-configuration");
            var madeUp = await OAuth.ReadJsonAsync(await http.SendAsync(request));
            Assert.Equal("https://localhost/", madeUp.GetProperty("issuer").GetString());
        }

        var first = await http.GetAsync("https://localhost/.well-known/openid-configuration");
        var second = await http.GetAsync("https://localhost/.WELL-KNOWN/openid-configuration");
        foreach (var answer in new[] { first, second })
        {
            var document = await OAuth.ReadJsonAsync(answer);
            Assert.True(document.TryGetProperty("token_endpoint", out var tokenEndpoint), document.ToString());
            Assert.Equal("https://localhost/connect/token", tokenEndpoint.GetString());
            Assert.Equal("https://localhost/.well-known/jwks", document.GetProperty("jwks_uri").GetString());
        }

        Assert.Equal(first.Headers.ETag, second.Headers.ETag);
    }
}

public sealed class SqliteProtocolDocumentCacheTests(SqliteServerFixture server) : ProtocolDocumentCacheTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlProtocolDocumentCacheTests(PostgreSqlServerFixture server) : ProtocolDocumentCacheTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
