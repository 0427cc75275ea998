using System.Net;
using System.Net.Http.Headers;
using IdentityServer.Clients;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// Browser apps call discovery, JWKS, token, userinfo and revocation from their own origin: the origin of one of
/// their registered redirect URIs gets CORS headers naming exactly that origin; any other origin gets none.
/// </summary>
public abstract class CorsTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string AllowOrigin = "Access-Control-Allow-Origin";

    [SkippableFact]
    public async Task A_preflight_to_the_token_endpoint_from_a_registered_spa_origin_is_allowed()
    {
        var spa = await CreateSpaAsync();

        using var response = await PreflightAsync(await server.EndpointAsync("token_endpoint"), spa.Origin, "POST", "content-type");

        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}");
        AssertAllows(response, spa.Origin);
        Assert.Contains("POST", response.Headers.GetValues("Access-Control-Allow-Methods").SelectMany(v => v.Split(',')).Select(v => v.Trim()));
        Assert.Contains("content-type", string.Join(",", response.Headers.GetValues("Access-Control-Allow-Headers")), StringComparison.OrdinalIgnoreCase);
    }

    [SkippableFact]
    public async Task Token_requests_from_a_registered_spa_origin_carry_the_cors_header_on_success_and_on_error()
    {
        var spa = await CreateSpaAsync();
        var tokenEndpoint = await server.EndpointAsync("token_endpoint");
        var (code, pkce) = await SignInAsync(spa);

        using var redeemed = await PostFormAsync(tokenEndpoint, spa.Origin, new()
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = spa.Client.ClientId,
            ["code"] = code,
            ["redirect_uri"] = spa.RedirectUri,
            ["code_verifier"] = pkce.Verifier,
        });
        Assert.Equal(HttpStatusCode.OK, redeemed.StatusCode);
        AssertAllows(redeemed, spa.Origin);
        var tokens = await OAuth.ReadJsonAsync(redeemed);

        using var refreshed = await PostFormAsync(tokenEndpoint, spa.Origin, new()
        {
            ["grant_type"] = "refresh_token",
            ["client_id"] = spa.Client.ClientId,
            ["refresh_token"] = tokens.GetProperty("refresh_token").GetString()!,
        });
        Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
        AssertAllows(refreshed, spa.Origin);

        // The app must be able to read an error too (e.g. to start a new sign-in).
        using var refused = await PostFormAsync(tokenEndpoint, spa.Origin, new()
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = spa.Client.ClientId,
            ["code"] = code,
            ["redirect_uri"] = spa.RedirectUri,
            ["code_verifier"] = pkce.Verifier,
        });
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refused)).GetProperty("error").GetString());
        AssertAllows(refused, spa.Origin);
    }

    [SkippableFact]
    public async Task Discovery_jwks_userinfo_and_revocation_answer_a_registered_spa_origin()
    {
        var spa = await CreateSpaAsync();
        var (code, pkce) = await SignInAsync(spa);
        var tokens = await OAuth.RedeemAsync(server, spa.Client, code, pkce, spa.RedirectUri);
        var accessToken = tokens.GetProperty("access_token").GetString()!;

        using var discovery = await SendAsync(HttpMethod.Get, "/.well-known/openid-configuration", spa.Origin);
        Assert.Equal(HttpStatusCode.OK, discovery.StatusCode);
        AssertAllows(discovery, spa.Origin);

        using var jwks = await SendAsync(HttpMethod.Get, await server.EndpointAsync("jwks_uri"), spa.Origin);
        Assert.Equal(HttpStatusCode.OK, jwks.StatusCode);
        AssertAllows(jwks, spa.Origin);

        var userinfoEndpoint = await server.EndpointAsync("userinfo_endpoint");
        using var userinfoPreflight = await PreflightAsync(userinfoEndpoint, spa.Origin, "GET", "authorization");
        AssertAllows(userinfoPreflight, spa.Origin);
        Assert.Contains("authorization", string.Join(",", userinfoPreflight.Headers.GetValues("Access-Control-Allow-Headers")),
            StringComparison.OrdinalIgnoreCase);
        using var userinfo = await SendAsync(HttpMethod.Get, userinfoEndpoint, spa.Origin,
            r => r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken));
        Assert.Equal(HttpStatusCode.OK, userinfo.StatusCode);
        AssertAllows(userinfo, spa.Origin);

        var revocationEndpoint = await server.EndpointAsync("revocation_endpoint");
        using var revocationPreflight = await PreflightAsync(revocationEndpoint, spa.Origin, "POST", "content-type");
        AssertAllows(revocationPreflight, spa.Origin);
        using var revoked = await PostFormAsync(revocationEndpoint, spa.Origin, new()
        {
            ["client_id"] = spa.Client.ClientId,
            ["token"] = tokens.GetProperty("refresh_token").GetString()!,
            ["token_type_hint"] = "refresh_token",
        });
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        AssertAllows(revoked, spa.Origin);
    }

    [SkippableFact]
    public async Task An_unregistered_origin_gets_no_cors_headers_anywhere()
    {
        var spa = await CreateSpaAsync();
        var (code, pkce) = await SignInAsync(spa);
        var tokens = await OAuth.RedeemAsync(server, spa.Client, code, pkce, spa.RedirectUri);
        var registered = new Uri(spa.Origin);

        // A stranger, the registered host on another scheme or port, a subdomain, and the opaque "null" origin.
        string[] strangers =
        [
            $"https://{Unique.Name("elsewhere")}.test",
            $"http://{registered.Host}",
            $"https://{registered.Host}:8443",
            $"https://evil.{registered.Host}",
            "null",
        ];
        string[] endpoints =
        [
            "/.well-known/openid-configuration",
            await server.EndpointAsync("jwks_uri"),
            await server.EndpointAsync("token_endpoint"),
            await server.EndpointAsync("userinfo_endpoint"),
            await server.EndpointAsync("revocation_endpoint"),
        ];

        foreach (var origin in strangers)
        {
            foreach (var endpoint in endpoints)
            {
                using var preflight = await PreflightAsync(endpoint, origin, "POST", "content-type, authorization");
                AssertNoCors(preflight, $"preflight {endpoint} from {origin}");
            }

            using var discovery = await SendAsync(HttpMethod.Get, endpoints[0], origin);
            Assert.Equal(HttpStatusCode.OK, discovery.StatusCode);
            AssertNoCors(discovery, $"discovery from {origin}");

            using var jwks = await SendAsync(HttpMethod.Get, endpoints[1], origin);
            AssertNoCors(jwks, $"jwks from {origin}");

            using var token = await PostFormAsync(endpoints[2], origin, new()
            {
                ["grant_type"] = "refresh_token",
                ["client_id"] = spa.Client.ClientId,
                ["refresh_token"] = "not-a-token",
            });
            AssertNoCors(token, $"token from {origin}");

            using var userinfo = await SendAsync(HttpMethod.Get, endpoints[3], origin,
                r => r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", tokens.GetProperty("access_token").GetString()));
            Assert.Equal(HttpStatusCode.OK, userinfo.StatusCode);
            AssertNoCors(userinfo, $"userinfo from {origin}");

            using var revocation = await PostFormAsync(endpoints[4], origin, new()
            {
                ["client_id"] = spa.Client.ClientId,
                ["token"] = "not-a-token",
            });
            AssertNoCors(revocation, $"revocation from {origin}");
        }
    }

    /// <summary>
    /// The origins are read from every client now and then; a client registered while they were being read is allowed
    /// at once afterwards, not once the read's (stale) copy expires.
    /// </summary>
    [SkippableFact]
    public async Task Origins_read_while_a_client_is_registered_are_not_kept_after_it()
    {
        var origin = $"https://{Unique.Name("late")}.test";
        var scopes = new ScopesHeldAtTheEnd(server.Factory.Services.GetRequiredService<IServiceScopeFactory>());
        var origins = new ClientOrigins(scopes, TimeProvider.System, NullLogger<ClientOrigins>.Instance);
        var reading = origins.IsAllowedAsync(origin, CancellationToken.None).AsTask();
        await scopes.Ended.Task; // every client read, the new one not among them

        await server.CreatePublicClientAsync(redirectUri: $"{origin}/callback");
        origins.Invalidate(); // as the admin API does after a change
        scopes.Release.SetResult();

        Assert.False(await reading);
        Assert.True(await origins.IsAllowedAsync(origin, CancellationToken.None));
    }

    /// <summary>
    /// However many cross-origin requests need the origins at once, they are read once; and a copy past its lifetime
    /// answers at once while the next read is under way, rather than making requests wait for it.
    /// </summary>
    [SkippableFact]
    public async Task The_origins_are_read_once_for_requests_at_the_same_time_and_an_old_copy_answers_while_they_are_read_again()
    {
        var spa = await CreateSpaAsync();
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var scopes = new ScopesHeldAtTheEnd(server.Factory.Services.GetRequiredService<IServiceScopeFactory>());
        var origins = new ClientOrigins(scopes, clock, NullLogger<ClientOrigins>.Instance);

        var first = Enumerable.Range(0, 20).Select(_ => origins.IsAllowedAsync(spa.Origin, CancellationToken.None).AsTask()).ToList();
        await scopes.Ended.Task;
        scopes.Release.SetResult();
        Assert.All(await Task.WhenAll(first), Assert.True);
        Assert.Equal(1, scopes.Created);

        scopes.Hold();
        clock.Advance(TimeSpan.FromSeconds(31));
        var whileReadAgain = origins.IsAllowedAsync(spa.Origin, CancellationToken.None);
        // Answered at once from the old copy, while the next read runs (and is held at its end).
        Assert.True(whileReadAgain.IsCompletedSuccessfully);
        Assert.True(await whileReadAgain);
        await scopes.Ended.Task;
        Assert.True(await origins.IsAllowedAsync(spa.Origin, CancellationToken.None));
        Assert.Equal(2, scopes.Created);
        scopes.Release.SetResult();
    }

    /// <summary>Clients changing while the origins are read cost one more read in all, not one each.</summary>
    [SkippableFact]
    public async Task Changes_during_a_read_are_caught_up_by_one_read_for_every_request_that_waited()
    {
        var spa = await CreateSpaAsync();
        var scopes = new ScopesHeldAtTheEnd(server.Factory.Services.GetRequiredService<IServiceScopeFactory>());
        var origins = new ClientOrigins(scopes, TimeProvider.System, NullLogger<ClientOrigins>.Instance);
        var first = origins.IsAllowedAsync(spa.Origin, CancellationToken.None).AsTask();
        await scopes.Ended.Task; // the first read, held at its end

        var waiting = new List<Task<bool>>();
        for (var i = 0; i < 5; i++)
        {
            origins.Invalidate();
            waiting.Add(origins.IsAllowedAsync(spa.Origin, CancellationToken.None).AsTask());
        }

        scopes.Release.SetResult();
        Assert.True(await first);
        Assert.All(await Task.WhenAll(waiting), Assert.True);
        Assert.Equal(2, scopes.Created);
    }

    /// <summary>
    /// A database that cannot be read: an expired copy keeps answering for a while, but after a change on this
    /// instance nothing read before it is used, so no origin is allowed until a read succeeds (a removed client's
    /// origin is never allowed for want of a read).
    /// </summary>
    [SkippableFact]
    public async Task When_the_clients_cannot_be_read_a_recent_copy_answers_but_not_one_from_before_a_change()
    {
        var spa = await CreateSpaAsync();
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var scopes = new ScopesHeldAtTheEnd(server.Factory.Services.GetRequiredService<IServiceScopeFactory>());
        scopes.Release.SetResult();
        var origins = new ClientOrigins(scopes, clock, NullLogger<ClientOrigins>.Instance);
        Assert.True(await origins.IsAllowedAsync(spa.Origin, CancellationToken.None));

        scopes.Fail = true;
        clock.Advance(TimeSpan.FromSeconds(31));
        Assert.True(await origins.IsAllowedAsync(spa.Origin, CancellationToken.None));

        origins.Invalidate();
        Assert.False(await origins.IsAllowedAsync(spa.Origin, CancellationToken.None));

        scopes.Fail = false;
        Assert.True(await origins.IsAllowedAsync(spa.Origin, CancellationToken.None));
    }

    /// <summary>Real scopes, whose end waits for <see cref="Release"/> once it has said it was reached.</summary>
    private sealed class ScopesHeldAtTheEnd(IServiceScopeFactory inner) : IServiceScopeFactory
    {
        private int _created;

        public TaskCompletionSource Ended { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>How many scopes were made: one per read of the clients.</summary>
        public int Created => Volatile.Read(ref _created);

        /// <summary>Holds the next scope's end again.</summary>
        public void Hold()
        {
            Ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
            Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        /// <summary>Scopes cannot be made, as when the database cannot be reached.</summary>
        public bool Fail { get; set; }

        public IServiceScope CreateScope()
        {
            Interlocked.Increment(ref _created);
            return Fail ? throw new InvalidOperationException("The database cannot be reached.") : new HeldScope(inner.CreateScope(), this);
        }

        private sealed class HeldScope(IServiceScope scope, ScopesHeldAtTheEnd owner) : IServiceScope, IAsyncDisposable
        {
            public IServiceProvider ServiceProvider => scope.ServiceProvider;

            public void Dispose() => scope.Dispose();

            public async ValueTask DisposeAsync()
            {
                owner.Ended.TrySetResult();
                await owner.Release.Task;
                await ((IAsyncDisposable)scope).DisposeAsync();
            }
        }
    }

    private sealed record Spa(TestClient Client, string RedirectUri, string Origin);

    /// <summary>A public browser app served from its own (unique) origin, redirect URI <c>https://spa-....test/callback</c>.</summary>
    private async Task<Spa> CreateSpaAsync()
    {
        var origin = $"https://{Unique.Name("spa")}.test";
        var redirectUri = $"{origin}/callback";
        var client = await server.CreatePublicClientAsync(redirectUri: redirectUri);
        return new Spa(client, redirectUri, origin);
    }

    private async Task<(string Code, Pkce Pkce)> SignInAsync(Spa spa)
    {
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, spa.Client.ClientId, "openid profile offline_access", pkce, spa.RedirectUri));
        page = await OAuth.SignInAsync(browser, page, user, stopAt: uri => spa.RedirectUri == uri.GetLeftPart(UriPartial.Path));
        Assert.True(page.RedirectTarget?.GetLeftPart(UriPartial.Path) == spa.RedirectUri, $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        var code = QueryHelpers.ParseQuery(page.RedirectTarget!.Query)["code"].ToString();
        Assert.False(string.IsNullOrEmpty(code));
        return (code, pkce);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string url, string origin, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(method, url);
        request.Headers.Add("Origin", origin);
        configure?.Invoke(request);
        return await server.CreateClient().SendAsync(request);
    }

    private Task<HttpResponseMessage> PreflightAsync(string url, string origin, string method, string headers) =>
        SendAsync(HttpMethod.Options, url, origin, r =>
        {
            r.Headers.Add("Access-Control-Request-Method", method);
            r.Headers.Add("Access-Control-Request-Headers", headers);
        });

    private Task<HttpResponseMessage> PostFormAsync(string url, string origin, Dictionary<string, string> form) =>
        SendAsync(HttpMethod.Post, url, origin, r => r.Content = new FormUrlEncodedContent(form));

    private static void AssertAllows(HttpResponseMessage response, string origin)
    {
        Assert.True(response.Headers.TryGetValues(AllowOrigin, out var values), $"No {AllowOrigin} on {response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}");
        Assert.Equal([origin], values);
        Assert.DoesNotContain("*", values);
    }

    private static void AssertNoCors(HttpResponseMessage response, string what)
    {
        Assert.True((int)response.StatusCode < 500, $"{what}: {(int)response.StatusCode}");
        var cors = response.Headers.Where(h => h.Key.StartsWith("Access-Control-", StringComparison.OrdinalIgnoreCase)).ToList();
        Assert.True(cors.Count == 0, $"{what}: unexpected {string.Join("; ", cors.Select(h => $"{h.Key}: {string.Join(",", h.Value)}"))}");
    }
}

public sealed class SqliteCorsTests(SqliteServerFixture server) : CorsTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlCorsTests(PostgreSqlServerFixture server) : CorsTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
