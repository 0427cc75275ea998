using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Accounts;
using IdentityServer.Logout;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using OpenIddict.Abstractions;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Logout;

/// <summary>
/// OpenID Connect Back-Channel Logout 1.0: when a session ends, each client with a back-channel logout URI that signed
/// in through it gets a signed logout token naming the user and the session, posted to a real listener.
/// </summary>
public abstract class BackChannelLogoutTests<TFixture>(TFixture server) : IAsyncLifetime where TFixture : ServerFixture
{
    private LogoutReceiver _receiver = null!;

    public async Task InitializeAsync() => _receiver = await LogoutReceiver.StartAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    [SkippableFact]
    public async Task Signing_out_posts_a_logout_token_to_each_client_that_signed_in_through_the_session()
    {
        var first = await ClientWithLogoutAsync("/first");
        var second = await ClientWithLogoutAsync("/second");
        await ClientWithLogoutAsync("/never-used");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var firstTokens = await SignInAsync(browser, first, user);
        var secondTokens = await SignInAsync(browser, second, user);
        var sessionId = Assert.Single(await SessionRows.OfAsync(server, user.Id)).Id;
        Assert.Equal(new[] { first.ClientId, second.ClientId }.Order(StringComparer.Ordinal), (await RecordedClientsAsync(sessionId)).Order(StringComparer.Ordinal));

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        await WaitForTokensAsync("/first", 1);
        await WaitForTokensAsync("/second", 1);
        var firstLogout = await AssertLogoutTokenAsync(_receiver.TokensAt("/first").Single(), first, user, firstTokens);
        await AssertLogoutTokenAsync(_receiver.TokensAt("/second").Single(), second, user, secondTokens);
        Assert.Equal(sessionId, firstLogout.GetClaim("sid").Value);
        await Eventually.TrueAsync(async () => (await RecordedClientsAsync(sessionId)).Count == 0, TimeSpan.FromSeconds(15), "the delivered tokens' rows deleted");
    }

    /// <summary>
    /// Signing in again as the same user (a step-up, or an application asking for a fresh sign-in) continues the
    /// session: the applications signed in through it are not logged out, and a later sign-out names the same session.
    /// </summary>
    [SkippableFact]
    public async Task Signing_in_again_as_the_same_user_continues_the_session_without_logging_the_applications_out()
    {
        var client = await ClientWithLogoutAsync("/again");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var tokens = await SignInAsync(browser, client, user);
        var sessionId = Assert.Single(await SessionRows.OfAsync(server, user.Id)).Id;

        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        Assert.Equal(sessionId, Assert.Single(await SessionRows.OfAsync(server, user.Id)).Id);
        Assert.Equal([client.ClientId], await RecordedClientsAsync(sessionId));
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));
        await WaitForTokensAsync("/again", 1);
        await AssertLogoutTokenAsync(_receiver.TokensAt("/again").Single(), client, user, tokens);
    }

    /// <summary>A device approved through a browser session is told when that session ends (the device flow's sign-in is that session's).</summary>
    [SkippableFact]
    public async Task A_device_approved_through_a_session_gets_a_logout_token_when_it_ends()
    {
        var client = await ClientWithLogoutAsync("/device", "urn:ietf:params:oauth:grant-type:device_code");
        var user = await server.CreateUserAsync();
        var codes = await OAuth.ReadJsonAsync(await OAuth.PostFormAsync(server, "device_authorization_endpoint",
            new Dictionary<string, string> { ["scope"] = "openid" }, client));
        var browser = server.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(codes.GetProperty("verification_uri_complete").GetString()!), user,
            stopAt: _ => false);
        Assert.Equal("/connect/verify/done", (await browser.SubmitAsync(page, button: "button[formaction*='Approve']")).Uri.AbsolutePath);
        var tokens = await OAuth.ReadJsonAsync(await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "urn:ietf:params:oauth:grant-type:device_code", ["device_code"] = codes.GetProperty("device_code").GetString()!,
        }, client));

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        await WaitForTokensAsync("/device", 1);
        await AssertLogoutTokenAsync(_receiver.TokensAt("/device").Single(), client, user, tokens);
    }

    [SkippableFact]
    public async Task The_identity_token_names_the_session_and_the_access_token_does_not()
    {
        var client = await ClientWithLogoutAsync("/sid");
        var user = await server.CreateUserAsync();
        var tokens = await SignInAsync(server.CreateBrowser(), client, user, "openid offline_access");
        var sessionId = Assert.Single(await SessionRows.OfAsync(server, user.Id)).Id;

        Assert.Equal(sessionId, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sid").GetString());
        Assert.False(Jwt.Payload(tokens.GetProperty("access_token").GetString()!).TryGetProperty("sid", out _));
        var refreshed = await OAuth.ReadJsonAsync(await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["refresh_token"] = tokens.GetProperty("refresh_token").GetString()!,
        }, client));
        Assert.Equal(sessionId, Jwt.Payload(refreshed.GetProperty("id_token").GetString()!).GetProperty("sid").GetString());
    }

    [SkippableFact]
    public async Task Ending_the_session_at_the_end_session_endpoint_posts_a_logout_token()
    {
        var client = await ClientWithLogoutAsync("/end-session");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var tokens = await SignInAsync(browser, client, user);

        await browser.NavigateAsync(await server.EndpointAsync("end_session_endpoint") + "?id_token_hint=" + tokens.GetProperty("id_token").GetString());

        await WaitForTokensAsync("/end-session", 1);
        await AssertLogoutTokenAsync(_receiver.TokensAt("/end-session").Single(), client, user, tokens);
    }

    /// <summary>An admin ending every session runs in a transaction with its audit entry: the tokens go once it commits.</summary>
    [SkippableFact]
    public async Task An_admin_ending_a_users_sessions_posts_a_logout_token_for_each()
    {
        var client = await ClientWithLogoutAsync("/admin-ended");
        var user = await server.CreateUserAsync();
        var phone = await SignInAsync(server.CreateBrowser(), client, user);
        var laptop = await SignInAsync(server.CreateBrowser(), client, user);
        var admin = await AdminAsync(server);

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(Path(UsersUrl, user.Id) + "/sessions", null)).StatusCode);

        await WaitForTokensAsync("/admin-ended", 2);
        var sids = _receiver.TokensAt("/admin-ended").Select(t => new JsonWebToken(t).GetClaim("sid").Value).Order(StringComparer.Ordinal);
        Assert.Equal(new[] { phone, laptop }.Select(t => Jwt.Payload(t.GetProperty("id_token").GetString()!).GetProperty("sid").GetString()!)
            .Order(StringComparer.Ordinal), sids);
    }

    /// <summary>Deleting a user would take the sessions' rows with it: they are ended first, so their clients are told.</summary>
    [SkippableFact]
    public async Task Deleting_a_user_posts_a_logout_token_for_their_session()
    {
        var client = await ClientWithLogoutAsync("/deleted");
        var user = await server.CreateUserAsync();
        var tokens = await SignInAsync(server.CreateBrowser(), client, user);
        var admin = await AdminAsync(server);

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(Path(UsersUrl, user.Id), null)).StatusCode);

        await WaitForTokensAsync("/deleted", 1);
        await AssertLogoutTokenAsync(_receiver.TokensAt("/deleted").Single(), client, user, tokens);
    }

    /// <summary>A client registered again under a deleted client's id is not told about the old one's sessions.</summary>
    [SkippableFact]
    public async Task Deleting_a_client_forgets_the_sessions_it_signed_in_through()
    {
        var client = await ClientWithLogoutAsync("/deleted-client");
        var user = await server.CreateUserAsync();
        await SignInAsync(server.CreateBrowser(), client, user);
        var sessionId = Assert.Single(await SessionRows.OfAsync(server, user.Id)).Id;
        Assert.Equal([client.ClientId], await RecordedClientsAsync(sessionId));

        Assert.Equal(HttpStatusCode.NoContent, (await (await AdminAsync(server)).DeleteAsync(Path(ClientsUrl, client.ClientId), null)).StatusCode);

        Assert.Empty(await RecordedClientsAsync(sessionId));
    }

    /// <summary>Admins (or an admin and the user) ending a user's sessions at once: each answers, none fails on the other's change.</summary>
    [SkippableFact]
    public async Task Ending_a_users_sessions_twice_at_once_succeeds_both_times()
    {
        var client = await ClientWithLogoutAsync("/twice");
        var user = await server.CreateUserAsync();
        await SignInAsync(server.CreateBrowser(), client, user);
        var admin = await AdminAsync(server);

        var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => admin.DeleteAsync(Path(UsersUrl, user.Id) + "/sessions", null)));

        Assert.All(answers, answer => Assert.Equal(HttpStatusCode.NoContent, answer.StatusCode));
        await WaitForTokensAsync("/twice", 1);
        await WaitUntilSettledAsync(server);
        Assert.Single(_receiver.TokensAt("/twice"));
    }

    /// <summary>
    /// The logout tokens to send live in the database: one still waiting for a retry when the server stops is sent
    /// after the next start, and only once when two instances start together on that database.
    /// </summary>
    [SkippableFact]
    public async Task A_logout_token_still_waiting_when_the_server_stops_is_sent_once_after_the_next_start()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        var settings = new Dictionary<string, string?>(server.Settings)
        {
            ["ConnectionStrings:IdentityServer"] = await TestDatabases.CreateAsync(server.Provider),
            ["BackChannelLogout:RetryDelay"] = "00:10:00",
        };
        var clock = new IdentityServer.Tests.Keys.TestClock(DateTimeOffset.UtcNow);
        TestServerFactory Start() => new(settings, testServices: services => services.AddSingleton<TimeProvider>(clock));
        TestClient client;
        TestUser user;
        JsonElement tokens;
        await using (var before = Start())
        {
            var first = new AttachedServer(before, server.Provider);
            client = await ClientWithLogoutAsync(first, "/after-restart");
            user = await first.CreateUserAsync();
            var browser = first.CreateBrowser();
            tokens = await SignInAsync(first, browser, client, user);
            _receiver.FailNext(1);
            await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));
            await Eventually.TrueAsync(async () => (await RowsAsync(first)).SingleOrDefault() is { Attempts: 1 } row && row.NotifyAt > clock.GetUtcNow().UtcDateTime.AddMinutes(5),
                TimeSpan.FromSeconds(15), "the refused token waiting for its retry");
        }

        Assert.Equal(1, _receiver.Refused);
        Assert.Empty(_receiver.TokensAt("/after-restart"));
        clock.Advance(TimeSpan.FromMinutes(11));
        await using var after = Start();
        await using var alongside = Start();
        var second = new AttachedServer(after, server.Provider);
        await Task.WhenAll(Task.Run(() => after.Server), Task.Run(() => alongside.Server));

        await WaitForTokensAsync("/after-restart", 1);
        await WaitUntilSettledAsync(second);
        await AssertLogoutTokenAsync(second, Assert.Single(_receiver.TokensAt("/after-restart")), client, user, tokens);
        Assert.Empty(await RowsAsync(second));
    }

    /// <summary>With ES256 signing keys a logout token is signed as the identity tokens are, RS256 (the client verifies it as one).</summary>
    [SkippableFact]
    public async Task With_ES256_signing_keys_a_logout_token_is_RS256_as_the_identity_token()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(server.Settings)
        {
            ["ConnectionStrings:IdentityServer"] = await TestDatabases.CreateAsync(server.Provider),
            ["Keys:Algorithm"] = "ES256",
        });
        var es256 = new AttachedServer(factory, server.Provider);
        var client = await ClientWithLogoutAsync(es256, "/es256");
        var user = await es256.CreateUserAsync();
        var browser = es256.CreateBrowser();
        var tokens = await SignInAsync(es256, browser, client, user);
        Assert.Equal("ES256", new JsonWebToken(tokens.GetProperty("access_token").GetString()!).Alg);

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        await WaitForTokensAsync("/es256", 1);
        var logout = await AssertLogoutTokenAsync(es256, Assert.Single(_receiver.TokensAt("/es256")), client, user, tokens);
        Assert.Equal("RS256", logout.Alg);
    }

    /// <summary>
    /// A client that never answers, with many sessions ending at once, holds one sender: another client's token is
    /// delivered while its posts still hang (with all four senders taken, it would wait for their timeout, a minute).
    /// </summary>
    [SkippableFact]
    public async Task A_client_that_never_answers_holds_up_no_other_client()
    {
        var stuck = await ClientWithLogoutAsync("/hang/stuck");
        var healthy = await ClientWithLogoutAsync("/healthy");
        var many = await server.CreateUserAsync();
        for (var i = 0; i < 6; i++)
        {
            await SignInAsync(server.CreateBrowser(), stuck, many);
        }

        var other = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await SignInAsync(browser, healthy, other);
        var admin = await AdminAsync(server);

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(Path(UsersUrl, many.Id) + "/sessions", null)).StatusCode);
        await Eventually.TrueAsync(() => Task.FromResult(_receiver.Hanging >= 1), TimeSpan.FromSeconds(15), "a post to the stuck client");
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        await WaitForTokensAsync("/healthy", 1);
        Assert.True(_receiver.Hanging >= 1, "the stuck client's post was answered meanwhile");
        _receiver.ReleaseHanging();
    }

    [SkippableFact]
    public async Task A_client_that_answers_500_is_tried_again()
    {
        var client = await ClientWithLogoutAsync("/flaky");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await SignInAsync(browser, client, user);
        _receiver.FailNext(1);

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));

        await WaitForTokensAsync("/flaky", 1);
        Assert.Equal(1, _receiver.Refused);
    }

    /// <summary>
    /// Two endings of one session that both read it before either deleted it: the second must leave alone the token the
    /// first made due, which a sender may have taken meanwhile (made due again, it would be taken and sent twice).
    /// </summary>
    [SkippableFact]
    public async Task An_ending_that_read_a_session_just_ended_leaves_its_logout_token_alone()
    {
        var client = await ClientWithLogoutAsync("/hang/ended-twice");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await SignInAsync(browser, client, user);
        var sessionId = Assert.Single(await SessionRows.OfAsync(server, user.Id)).Id;
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/logout"));
        await Eventually.TrueAsync(() => Task.FromResult(_receiver.Hanging >= 1), TimeSpan.FromSeconds(15), "the logout token's post under way");
        var taken = Assert.Single(await RowsAsync(server), c => c.SessionId == sessionId);

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            Assert.Equal(0, await scope.ServiceProvider.GetRequiredService<UserSessions>().EndByIdsAsync(user.Id, [sessionId], CancellationToken.None));
        }

        var after = Assert.Single(await RowsAsync(server), c => c.SessionId == sessionId);
        Assert.Equal((1, taken.NotifyAt), (after.Attempts, after.NotifyAt));
        Assert.True(after.NotifyAt > DateTime.UtcNow.AddSeconds(30), "the row keeps the sender's lease");
        _receiver.ReleaseHanging();
    }

    /// <summary>Two senders (two instances) that read the same due row: one takes it, the other leaves it.</summary>
    [SkippableFact]
    public async Task Two_senders_that_read_the_same_due_token_take_it_once()
    {
        // Due far in the future, so that the server's own sender leaves it to this test.
        var dueAt = new DateTime(2100, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        var row = new UserSessionClient
        {
            SessionId = Guid.NewGuid().ToString("N"), ClientId = Unique.Name("no-such-client"), UserId = "someone", Issuer = "https://localhost/",
            RecordedAt = DateTime.UtcNow, NotifyAt = dueAt,
        };
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>();
            db.Add(row);
            await db.SaveChangesAsync();
        }

        var now = dueAt.AddMinutes(1);
        await using var first = server.Factory.Services.CreateAsyncScope();
        await using var second = server.Factory.Services.CreateAsyncScope();
        var queues = new[] { first, second }.Select(s => s.ServiceProvider.GetRequiredService<LogoutTokenQueue>()).ToArray();
        var read = await Task.WhenAll(queues.Select(async q => (await q.DueAsync(now, [], 1000, CancellationToken.None)).Single(c => c.SessionId == row.SessionId)));

        var took = new[] { await queues[0].TakeAsync(read[0], now, now.AddMinutes(1), CancellationToken.None), await queues[1].TakeAsync(read[1], now, now.AddMinutes(1), CancellationToken.None) };

        Assert.Equal([true, false], took);
        Assert.Equal(1, (await RowsAsync(server)).Single(c => c.SessionId == row.SessionId).Attempts);
        Assert.Equal(0, await queues[1].SettleAsync(read[1], attempt: 2, retryAt: null, CancellationToken.None)); // not its attempt
        Assert.Equal(1, await queues[0].SettleAsync(read[0], attempt: 1, retryAt: null, CancellationToken.None));
    }

    /// <summary>
    /// A client recorded for a session that ended while its request was under way (after the request's check, before
    /// the record): the ending could not see it, so recording it makes it due, and the client is told. The session here
    /// is gone before the record; the case of an ending still under way, whose lock the record waits on, is the same
    /// once the ending commits, and is not timed here.
    /// </summary>
    [SkippableFact]
    public async Task A_client_recorded_for_a_session_that_has_just_ended_is_told()
    {
        var client = await ClientWithLogoutAsync("/recorded-late");
        var sessionId = Guid.NewGuid().ToString("N"); // no longer on record
        var session = new System.Security.Claims.ClaimsPrincipal(new System.Security.Claims.ClaimsIdentity([new System.Security.Claims.Claim("sid", sessionId)], "test"));
        var granted = new System.Security.Claims.ClaimsPrincipal(new System.Security.Claims.ClaimsIdentity("test"));
        granted.SetClaim(OpenIddictConstants.Claims.Subject, "the-user").SetScopes("openid");
        var http = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        http.Request.Scheme = "https";
        http.Request.Host = new Microsoft.AspNetCore.Http.HostString("localhost");
        // As during an authorization request: OpenIddict's transaction says which issuer the client's tokens name.
        http.Features.Set(new OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreFeature
        {
            Transaction = new OpenIddict.Server.OpenIddictServerTransaction { BaseUri = TestServerFactory.Authority },
        });

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var options = scope.ServiceProvider.GetRequiredService<Microsoft.Extensions.Options.IOptionsMonitor<OpenIddict.Server.OpenIddictServerOptions>>().CurrentValue;
            await scope.ServiceProvider.GetRequiredService<SessionClients>().RecordAsync(http, session, granted, client.ClientId, options, CancellationToken.None);
        }

        await WaitForTokensAsync("/recorded-late", 1);
        var token = new JsonWebToken(_receiver.TokensAt("/recorded-late").Single());
        Assert.Equal((sessionId, "the-user"), (token.GetClaim("sid").Value, token.Subject));
    }

    [SkippableFact]
    public async Task Discovery_advertises_back_channel_logout_with_sessions()
    {
        var discovery = await server.CreateClient().GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");

        Assert.True(discovery.GetProperty("backchannel_logout_supported").GetBoolean());
        Assert.True(discovery.GetProperty("backchannel_logout_session_supported").GetBoolean());
        Assert.Contains("sid", discovery.GetProperty("claims_supported").EnumerateArray().Select(c => c.GetString()));
    }

    [SkippableTheory]
    [InlineData("http://rp.example.com/logout", "backchannel_logout_uri")]
    [InlineData("https://rp.example.com/logout#fragment", "backchannel_logout_uri")]
    [InlineData("not a uri", "backchannel_logout_uri")]
    [InlineData("http://127.0.0.1:5000/logout", "backchannel_logout_uri")] // loopback http, but for a public client
    [InlineData("https://user:secret@rp.example.com/logout", "backchannel_logout_uri")]
    [InlineData(null, "backchannel_logout_session_required")]
    public async Task The_admin_API_refuses_an_unusable_back_channel_logout_registration(string? uri, string field)
    {
        var admin = await AdminAsync(server);
        var document = new Dictionary<string, object?>
        {
            ["client_id"] = Unique.Name("rp"), ["token_endpoint_auth_method"] = "none", ["grant_types"] = new[] { "authorization_code" },
            ["redirect_uris"] = new[] { "https://rp.example.com/callback" }, ["scope"] = "openid",
            ["backchannel_logout_uri"] = uri, ["backchannel_logout_session_required"] = true,
        };

        await (await admin.PostJsonAsync(ClientsUrl, Json(document))).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", field);
    }

    [SkippableFact]
    public async Task A_back_channel_logout_registration_round_trips_through_the_admin_API()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("rp");
        var created = await admin.PostJsonAsync(ClientsUrl, Json(new Dictionary<string, object?>
        {
            ["client_id"] = clientId, ["token_endpoint_auth_method"] = "none", ["grant_types"] = new[] { "authorization_code" },
            ["redirect_uris"] = new[] { "https://rp.example.com/callback" }, ["scope"] = "openid",
            ["backchannel_logout_uri"] = "https://rp.example.com/backchannel?tenant=1", ["backchannel_logout_session_required"] = true,
        }));
        await created.ExpectAsync(HttpStatusCode.Created);

        var read = await admin.GetJsonAsync(Path(ClientsUrl, clientId));

        Assert.Equal("https://rp.example.com/backchannel?tenant=1", read.GetProperty("backchannel_logout_uri").GetString());
        Assert.True(read.GetProperty("backchannel_logout_session_required").GetBoolean());
    }

    /// <summary>A web app with a server (a confidential client: plain http on loopback is allowed only for one).</summary>
    private Task<TestClient> ClientWithLogoutAsync(string path, params string[] grants) => ClientWithLogoutAsync(server, path, grants);

    private Task<TestClient> ClientWithLogoutAsync(ServerFixture on, string path, params string[] grants) => on.CreateClientAsync(c =>
    {
        c.ClientSecret = Unique.Secret();
        c.TokenEndpointAuthMethod = "client_secret_basic";
        c.GrantTypes = grants.Length > 0 ? [.. grants] : ["authorization_code", "refresh_token"];
        c.RedirectUris = [OAuth.AppRedirectUri];
        c.Scope = "openid offline_access";
        c.ConsentType = "implicit";
        c.BackChannelLogoutUri = _receiver.Url(path);
    });

    /// <summary>The code flow for a confidential client in <paramref name="browser"/>; returns the token response.</summary>
    private Task<JsonElement> SignInAsync(Browser browser, TestClient client, TestUser user, string scope = "openid") =>
        SignInAsync(server, browser, client, user, scope);

    private static async Task<JsonElement> SignInAsync(ServerFixture on, Browser browser, TestClient client, TestUser user, string scope = "openid")
    {
        var pkce = Pkce.Create();
        var answer = await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(on, client.ClientId, scope, pkce), user);
        Assert.True(answer.ContainsKey("code"), string.Join(", ", answer));
        var response = await OAuth.PostTokenAsync(on, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["code"] = answer["code"], ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = pkce.Verifier,
        }, client);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }

    private async Task<List<string>> RecordedClientsAsync(string sessionId) =>
        [.. (await RowsAsync(server)).Where(c => c.SessionId == sessionId).Select(c => c.ClientId)];

    /// <summary>What the server has recorded of clients and sessions, logout tokens waiting to be sent included.</summary>
    private static async Task<List<UserSessionClient>> RowsAsync(ServerFixture on)
    {
        await using var scope = on.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Set<UserSessionClient>().AsNoTracking().ToListAsync();
    }

    /// <summary>Waits until no logout token is waiting to be sent: every one delivered, or given up on.</summary>
    private static Task WaitUntilSettledAsync(ServerFixture on) =>
        Eventually.TrueAsync(async () => !(await RowsAsync(on)).Any(c => c.NotifyAt is not null), TimeSpan.FromSeconds(15), "every logout token settled");

    private Task WaitForTokensAsync(string path, int count) =>
        Eventually.TrueAsync(() => Task.FromResult(_receiver.TokensAt(path).Count >= count), TimeSpan.FromSeconds(15), $"{count} logout token(s) at {path}");

    /// <summary>Checks the token as a relying party must (section 2.6) and returns it.</summary>
    private Task<JsonWebToken> AssertLogoutTokenAsync(string token, TestClient client, TestUser user, JsonElement signedIn) =>
        AssertLogoutTokenAsync(server, token, client, user, signedIn);

    private static async Task<JsonWebToken> AssertLogoutTokenAsync(ServerFixture on, string token, TestClient client, TestUser user, JsonElement signedIn)
    {
        var validated = await OAuth.ValidateJwtAsync(on, token, client.ClientId, "logout+jwt");
        Assert.True(validated.IsValid, validated.Exception?.ToString());
        var jwt = new JsonWebToken(token);
        var idToken = new JsonWebToken(signedIn.GetProperty("id_token").GetString()!);
        Assert.Equal(idToken.Issuer, jwt.Issuer);
        Assert.Equal(idToken.Kid, jwt.Kid);
        Assert.Equal(user.Id, jwt.Subject);
        Assert.Equal(idToken.GetClaim("sid").Value, jwt.GetClaim("sid").Value);
        Assert.False(string.IsNullOrEmpty(jwt.Id));
        Assert.False(jwt.TryGetPayloadValue<string>("nonce", out _));
        var events = Jwt.Payload(token).GetProperty("events");
        Assert.Equal(JsonValueKind.Object, events.GetProperty(BackChannelLogoutSender.LogoutEvent).ValueKind);
        Assert.True(jwt.IssuedAt > DateTime.UtcNow.AddMinutes(-5));
        return jwt;
    }
}

public static class BackChannelLogoutSettings
{
    public static void Apply(ServerFixture fixture)
    {
        fixture.Settings["BackChannelLogout:RetryDelay"] = "00:00:00";
        fixture.Settings["BackChannelLogout:Attempts"] = "2";
        // Long enough that a client which never answers holds its post for the whole of a test.
        fixture.Settings["BackChannelLogout:Timeout"] = "00:01:00";
    }
}

public sealed class SqliteBackChannelLogoutFixture : SqliteServerFixture
{
    public SqliteBackChannelLogoutFixture() => BackChannelLogoutSettings.Apply(this);
}

public sealed class PostgreSqlBackChannelLogoutFixture : PostgreSqlServerFixture
{
    public PostgreSqlBackChannelLogoutFixture() => BackChannelLogoutSettings.Apply(this);
}

public sealed class SqliteBackChannelLogoutTests(SqliteBackChannelLogoutFixture server)
    : BackChannelLogoutTests<SqliteBackChannelLogoutFixture>(server), IClassFixture<SqliteBackChannelLogoutFixture>;

public sealed class PostgreSqlBackChannelLogoutTests(PostgreSqlBackChannelLogoutFixture server)
    : BackChannelLogoutTests<PostgreSqlBackChannelLogoutFixture>(server), IClassFixture<PostgreSqlBackChannelLogoutFixture>;
