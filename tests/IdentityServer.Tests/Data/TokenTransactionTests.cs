using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using OpenIddict.EntityFrameworkCore.Models;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Tests.Data;

/// <summary>
/// A token request that dies after the grant was redeemed and the new tokens were made, but before the answer,
/// leaves the grant as it was: the client's retry works. With no reuse leeway (these fixtures set it to zero)
/// nothing else could make the retry work: a half-redeemed refresh token would count as reuse and revoke the chain.
/// The request dies on an instance that fails at that exact point; the retry goes to a healthy one.
/// </summary>
public abstract class TokenTransactionTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private sealed class CrashBeforeAnswering : Exception;

    /// <summary>
    /// Another instance on the same database that runs <paramref name="step"/> in each token request once the tokens
    /// are made, before anything is written back.
    /// </summary>
    private WebApplicationFactory<Program> InstanceThatStepsInAfterTokensAreMade(Func<ValueTask> step) =>
        InstanceThatStepsInAfterTokensAreMade(_ => step());

    private WebApplicationFactory<Program> InstanceThatStepsInAfterTokensAreMade(Func<ProcessSignInContext, ValueTask> step) => server.Factory.WithWebHostBuilder(builder =>
        builder.ConfigureServices(services => services.AddOpenIddict().AddServer(options => options.AddEventHandler<ProcessSignInContext>(handler => handler
            .UseInlineHandler(context => context.EndpointType == OpenIddictServerEndpointType.Token ? step(context) : ValueTask.CompletedTask)
            .SetOrder(OpenIddictServerHandlers.AttachSignInParameters.Descriptor.Order - 500)))));

    private WebApplicationFactory<Program> CrashingInstance() => InstanceThatStepsInAfterTokensAreMade(() => throw new CrashBeforeAnswering());

    /// <summary>A new user signed in to a new public client: the client and the refresh token it got.</summary>
    private async Task<(TestClient Client, string RefreshToken)> SignedInAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, await server.CreateUserAsync(), "openid offline_access");
        return (client, tokens.GetProperty("refresh_token").GetString()!);
    }

    /// <summary>A new user signed in to a new public client: the user and the id of the access token entry.</summary>
    private async Task<(TestUser User, string AccessTokenId)> SignedInAccessTokenAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        return (user, Jwt.Payload(tokens.GetProperty("access_token").GetString()!).GetProperty("oi_tkn_id").GetString()!);
    }

    /// <summary>The entry's status as stored, read in a scope of its own.</summary>
    private async Task<string?> StoredStatusAsync(string tokenId)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        return await manager.GetStatusAsync((await manager.FindByIdAsync(tokenId))!);
    }

    private static Dictionary<string, string> RefreshForm(TestClient client, string refreshToken) =>
        new() { ["grant_type"] = "refresh_token", ["client_id"] = client.ClientId, ["refresh_token"] = refreshToken };

    /// <summary>The chain is intact: the new access token is accepted, and the new refresh token refreshes in turn.</summary>
    private async Task AssertChainIntactAsync(TestClient client, JsonElement tokens)
    {
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, tokens.GetProperty("access_token").GetString()!)).StatusCode);
        var next = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.True(next.StatusCode == HttpStatusCode.OK, (await OAuth.ReadJsonAsync(next)).ToString());
    }

    /// <summary>The grant was ended: the access token is refused, and the refresh token does not refresh.</summary>
    private async Task AssertChainRevokedAsync(TestClient client, JsonElement tokens)
    {
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, tokens.GetProperty("access_token").GetString()!)).StatusCode);
        var next = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(next)).GetProperty("error").GetString());
    }

    /// <summary>The refresh token was left as it was: it refreshes, and the chain it starts is intact.</summary>
    private async Task AssertRefreshTokenStillRefreshesAsync(TestClient client, string refreshToken)
    {
        var retried = await OAuth.RefreshAsync(server, client, refreshToken);
        var json = await OAuth.ReadJsonAsync(retried);
        Assert.True(retried.StatusCode == HttpStatusCode.OK, json.ToString());
        await AssertChainIntactAsync(client, json);
    }

    private async Task<HttpResponseMessage> PostTokenAsync(WebApplicationFactory<Program> instance, Dictionary<string, string> form,
        CancellationToken cancellationToken = default)
    {
        using var http = instance.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });
        return await http.PostAsync(await server.EndpointAsync("token_endpoint"), new FormUrlEncodedContent(form), cancellationToken);
    }

    [SkippableFact]
    public async Task A_refresh_that_dies_before_answering_leaves_the_refresh_token_usable()
    {
        var (client, refreshToken) = await SignedInAsync();

        await using (var crashing = CrashingInstance())
        {
            var died = await PostTokenAsync(crashing, RefreshForm(client, refreshToken));
            Assert.Equal(HttpStatusCode.InternalServerError, died.StatusCode);
        }

        await AssertRefreshTokenStillRefreshesAsync(client, refreshToken);
    }

    /// <summary>
    /// A refresh whose redemption is missing when the request commits (OpenIddict's TryRedeemAsync answers false on a
    /// failure, and for a refresh token nothing checks it; here the recorded redemption is dropped after the tokens are
    /// made) writes nothing and answers invalid_grant: new tokens without the redemption would have left the refresh
    /// token usable again and again.
    /// </summary>
    [SkippableFact]
    public async Task A_refresh_whose_redemption_was_not_recorded_gets_invalid_grant_and_leaves_the_refresh_token_as_it_was() =>
        await AssertRefreshRefusedWhenRedemptionIsReplacedAsync(static (_, _) => Task.CompletedTask);

    /// <summary>As above, with another of the user's entries changed instead: only the presented grant's redemption counts.</summary>
    [SkippableFact]
    public async Task A_refresh_that_changed_another_entry_instead_of_redeeming_its_own_gets_invalid_grant() =>
        await AssertRefreshRefusedWhenRedemptionIsReplacedAsync(static async (db, redeemed) =>
        {
            var other = await db.Set<OpenIddictEntityFrameworkCoreToken>().AsTracking()
                .FirstAsync(token => token.Subject == redeemed.Subject && token.Id != redeemed.Id);
            db.Entry(other).State = EntityState.Modified;
        });

    /// <summary>
    /// A refresh on an instance that, once the tokens are made, drops the recorded redemption of the presented refresh
    /// token and then runs <paramref name="instead"/>: it answers invalid_grant, and the refresh token still refreshes.
    /// </summary>
    private async Task AssertRefreshRefusedWhenRedemptionIsReplacedAsync(Func<ApplicationDbContext, OpenIddictEntityFrameworkCoreToken, Task> instead)
    {
        var (client, refreshToken) = await SignedInAsync();

        await using (var forgetful = InstanceThatStepsInAfterTokensAreMade(async context =>
        {
            var db = context.Transaction.GetHttpRequest()!.HttpContext.RequestServices.GetRequiredService<ApplicationDbContext>();
            var redeemed = db.ChangeTracker.Entries<OpenIddictEntityFrameworkCoreToken>().Single(entry => entry.State == EntityState.Modified);
            redeemed.State = EntityState.Detached;
            await instead(db, redeemed.Entity);
        }))
        {
            var refused = await PostTokenAsync(forgetful, RefreshForm(client, refreshToken));
            var json = await OAuth.ReadJsonAsync(refused);
            Assert.True(refused.StatusCode == HttpStatusCode.BadRequest, json.ToString());
            Assert.Equal("invalid_grant", json.GetProperty("error").GetString());
        }

        await AssertRefreshTokenStillRefreshesAsync(client, refreshToken);
    }

    /// <summary>
    /// Two requests redeem one refresh token: the first is held after it recorded the redemption and made its tokens,
    /// while the second completes on another instance. The first's write then finds the entry changed and it answers
    /// invalid_grant (its tokens were never stored nor delivered). While a request held the database's write lock from
    /// the redemption to its answer, the second could not write at all. With no reuse leeway the race is a reuse like
    /// any other (RFC 9700 4.14.2: the server cannot tell which of the two was the attacker): the second's tokens are
    /// revoked with the grant.
    /// </summary>
    [SkippableFact]
    public async Task Of_two_racing_redemptions_of_a_refresh_token_the_one_that_writes_second_gets_invalid_grant_and_ends_the_grant()
    {
        var (client, refreshToken) = await SignedInAsync();
        var (first, second) = await RaceAsync(InstanceThatStepsInAfterTokensAreMade, RefreshForm(client, refreshToken));

        await AssertRefusedAsync(first);
        await AssertChainRevokedAsync(client, await AssertGrantedAsync(second));
    }

    /// <summary>Within a reuse leeway the second redemption was allowed: losing the race refuses it, and the grant stays.</summary>
    [SkippableFact]
    public async Task Of_two_racing_redemptions_of_a_refresh_token_within_a_reuse_leeway_the_loser_leaves_the_grant_alone()
    {
        var (client, refreshToken) = await SignedInAsync();
        var (first, second) = await RaceAsync(step => InstanceThatStepsInAfterTokensAreMade(step)
            .WithWebHostBuilder(builder => builder.UseSetting("Tokens:RefreshTokenReuseLeeway", "00:00:30")), RefreshForm(client, refreshToken));

        await AssertRefusedAsync(first);
        await AssertChainIntactAsync(client, await AssertGrantedAsync(second));
    }

    /// <summary>
    /// A code redeemed by two requests at once (an intercepted code racing the client's own request): the one that writes
    /// second gets invalid_grant, and the grant is ended with the tokens the first got (RFC 6749 4.1.2), as for a code
    /// presented again after its redemption.
    /// </summary>
    [SkippableFact]
    public async Task Of_two_racing_redemptions_of_a_code_the_one_that_writes_second_gets_invalid_grant_and_ends_the_grant()
    {
        var (client, form) = await CodeRedemptionAsync();
        var (first, second) = await RaceAsync(InstanceThatStepsInAfterTokensAreMade, form);

        await AssertRefusedAsync(first);
        await AssertChainRevokedAsync(client, await AssertGrantedAsync(second));
    }

    /// <summary>A device code redeemed by two polls at once ends its grant the same way, the first poll's tokens with it.</summary>
    [SkippableFact]
    public async Task Of_two_racing_redemptions_of_a_device_code_the_one_that_writes_second_gets_invalid_grant_and_ends_the_grant()
    {
        const string DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";
        var client = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.ApplicationType = "native";
            c.GrantTypes = [DeviceCodeGrant, "refresh_token"];
            c.Scope = "openid offline_access";
        });
        var codes = await OAuth.ReadJsonAsync(await OAuth.PostFormAsync(server, "device_authorization_endpoint",
            new Dictionary<string, string> { ["client_id"] = client.ClientId, ["scope"] = "openid offline_access" }));
        var browser = server.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(codes.GetProperty("verification_uri_complete").GetString()!),
            await server.CreateUserAsync(), stopAt: _ => false);
        Assert.Equal("/connect/verify/done", (await browser.SubmitAsync(page, button: "button[formaction*='Approve']")).Uri.AbsolutePath);

        var (first, second) = await RaceAsync(InstanceThatStepsInAfterTokensAreMade, new Dictionary<string, string>
        {
            ["grant_type"] = DeviceCodeGrant, ["client_id"] = client.ClientId, ["device_code"] = codes.GetProperty("device_code").GetString()!,
        });

        await AssertRefusedAsync(first);
        await AssertChainRevokedAsync(client, await AssertGrantedAsync(second));
    }

    /// <summary>
    /// Posts <paramref name="form"/> to an instance made by <paramref name="instance"/> that, once the tokens are made,
    /// posts it again to the fixture's server and lets that request finish first.
    /// </summary>
    private async Task<(HttpResponseMessage First, HttpResponseMessage Second)> RaceAsync(
        Func<Func<ValueTask>, WebApplicationFactory<Program>> instance, Dictionary<string, string> form)
    {
        HttpResponseMessage? second = null;
        await using var holding = instance(async () => second ??= await PostTokenAsync(server.Factory, form));
        var first = await PostTokenAsync(holding, form);
        return (first, second!);
    }

    private static async Task AssertRefusedAsync(HttpResponseMessage response)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, json.ToString());
        Assert.Equal("invalid_grant", json.GetProperty("error").GetString());
    }

    private static async Task<JsonElement> AssertGrantedAsync(HttpResponseMessage response)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        return json;
    }

    /// <summary>
    /// Several requests redeem one refresh token, all of them validated before any writes (each waits, once its tokens
    /// are made, until all have arrived), so their writes reach the group-commit writer together, mostly in one batch:
    /// the concurrency check lets exactly one through and the others answer invalid_grant. With no reuse leeway they
    /// end the grant, the winner's tokens with it.
    /// </summary>
    [SkippableFact]
    public async Task Of_many_redemptions_of_one_refresh_token_written_together_exactly_one_succeeds()
    {
        const int Requests = 8;
        var (client, refreshToken) = await SignedInAsync();
        var arrived = 0;
        var allArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var gathering = InstanceThatStepsInAfterTokensAreMade(async () =>
        {
            if (Interlocked.Increment(ref arrived) == Requests)
            {
                allArrived.SetResult();
            }

            await allArrived.Task.WaitAsync(TimeSpan.FromMinutes(1));
        });

        var responses = await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ => PostTokenAsync(gathering, RefreshForm(client, refreshToken))));

        var answers = await Task.WhenAll(responses.Select(async response => (response.StatusCode, Json: await OAuth.ReadJsonAsync(response))));
        var winner = Assert.Single(answers, answer => answer.StatusCode == HttpStatusCode.OK);
        Assert.All(answers.Where(answer => answer.StatusCode != HttpStatusCode.OK), answer =>
        {
            Assert.Equal(HttpStatusCode.BadRequest, answer.StatusCode);
            Assert.Equal("invalid_grant", answer.Json.GetProperty("error").GetString());
        });
        await AssertChainRevokedAsync(client, winner.Json);
    }

    /// <summary>
    /// The redeemed refresh token's entry is overwritten by the writer's own UPDATE (not SaveChanges): it must read back
    /// redeemed, with its client and authorization kept, beside its successor.
    /// </summary>
    [SkippableFact]
    public async Task A_redeemed_refresh_token_s_entry_reads_back_redeemed_with_its_client_and_authorization()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var refreshed = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.True(refreshed.StatusCode == HttpStatusCode.OK, (await OAuth.ReadJsonAsync(refreshed)).ToString());

        await using var scope = server.Factory.Services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        var refreshEntries = new List<object>();
        await foreach (var entry in manager.FindBySubjectAsync(user.Id))
        {
            if (await manager.GetTypeAsync(entry) == OpenIddictConstants.TokenTypeIdentifiers.RefreshToken)
            {
                refreshEntries.Add(entry);
            }
        }

        Assert.Equal(2, refreshEntries.Count);
        var statuses = await Task.WhenAll(refreshEntries.Select(async entry => await manager.GetStatusAsync(entry)));
        var redeemed = refreshEntries[Array.IndexOf(statuses, OpenIddictConstants.Statuses.Redeemed)];
        var successor = refreshEntries[Array.IndexOf(statuses, OpenIddictConstants.Statuses.Valid)];
        Assert.NotNull(await manager.GetRedemptionDateAsync(redeemed));
        Assert.Null(await manager.GetRedemptionDateAsync(successor));
        Assert.NotNull(await manager.GetApplicationIdAsync(redeemed));
        Assert.Equal(await manager.GetApplicationIdAsync(successor), await manager.GetApplicationIdAsync(redeemed));
        Assert.NotNull(await manager.GetAuthorizationIdAsync(redeemed));
        Assert.Equal(await manager.GetAuthorizationIdAsync(successor), await manager.GetAuthorizationIdAsync(redeemed));
    }

    /// <summary>
    /// In one scope (one request) each lookup of an entry gives the same instance, whether it was read from the
    /// database or made in this scope and written by the group-commit writer (neither is in the scope's context), and a
    /// change made through one lookup is seen by the next.
    /// </summary>
    [SkippableFact]
    public async Task Every_lookup_of_an_entry_in_a_request_gives_the_same_instance()
    {
        var (user, accessTokenId) = await SignedInAccessTokenAsync();

        await using var scope = server.Factory.Services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        var read = await manager.FindByIdAsync(accessTokenId);
        Assert.NotNull(read);
        Assert.Same(read, await manager.FindByIdAsync(accessTokenId));
        Assert.True(await manager.TryRevokeAsync(read));
        Assert.Equal(OpenIddictConstants.Statuses.Revoked, await manager.GetStatusAsync((await manager.FindByIdAsync(accessTokenId))!));

        var made = await manager.CreateAsync(new OpenIddictTokenDescriptor
        {
            Subject = user.Id,
            Type = OpenIddictConstants.TokenTypeIdentifiers.AccessToken,
            Status = OpenIddictConstants.Statuses.Valid,
            ExpirationDate = DateTimeOffset.UtcNow.AddMinutes(5),
        });
        var madeId = (await manager.GetIdAsync(made))!;
        Assert.Same(made, await manager.FindByIdAsync(madeId));

        Assert.Equal(OpenIddictConstants.Statuses.Revoked, await StoredStatusAsync(accessTokenId));
        Assert.Equal(OpenIddictConstants.Statuses.Valid, await StoredStatusAsync(madeId));
    }

    /// <summary>
    /// A search (a tracking query) that loads an entry already looked up in the request holds a second instance, the
    /// one the context tracks: later lookups give that one, so a write attaches it instead of failing on two instances.
    /// </summary>
    [SkippableFact]
    public async Task A_lookup_after_a_search_that_loaded_the_entry_gives_the_searched_instance()
    {
        var (user, accessTokenId) = await SignedInAccessTokenAsync();

        await using var scope = server.Factory.Services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        Assert.NotNull(await manager.FindByIdAsync(accessTokenId));
        object? searched = null;
        await foreach (var entry in manager.FindBySubjectAsync(user.Id))
        {
            searched = await manager.GetIdAsync(entry) == accessTokenId ? entry : searched;
        }

        Assert.NotNull(searched);
        Assert.Same(searched, await manager.FindByIdAsync(accessTokenId));
        Assert.True(await manager.TryRevokeAsync(searched));

        Assert.Equal(OpenIddictConstants.Statuses.Revoked, await StoredStatusAsync(accessTokenId));
    }

    /// <summary>A write that lost a race (another request changed the entry first) leaves nothing stale: the next lookup reads what is stored.</summary>
    [SkippableFact]
    public async Task After_a_write_that_lost_a_race_the_next_lookup_in_the_request_reads_what_is_stored()
    {
        var (_, accessTokenId) = await SignedInAccessTokenAsync();

        await using var loser = server.Factory.Services.CreateAsyncScope();
        var losingManager = loser.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        var readBeforeTheRace = (await losingManager.FindByIdAsync(accessTokenId))!;
        await using (var winner = server.Factory.Services.CreateAsyncScope())
        {
            var winningManager = winner.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
            Assert.True(await winningManager.TryRevokeAsync((await winningManager.FindByIdAsync(accessTokenId))!));
        }

        Assert.False(await losingManager.TryRedeemAsync(readBeforeTheRace));

        Assert.Equal(OpenIddictConstants.Statuses.Revoked, await losingManager.GetStatusAsync((await losingManager.FindByIdAsync(accessTokenId))!));
    }

    /// <summary>
    /// A refresh whose client goes away once its tokens are made (the request is aborted before it writes) leaves the
    /// refresh token as it was: nothing is written for a request that will never answer, so the client's retry works.
    /// </summary>
    [SkippableFact]
    public async Task A_refresh_abandoned_by_its_client_before_it_writes_leaves_the_refresh_token_usable()
    {
        var (client, refreshToken) = await SignedInAsync();
        using var clientGoesAway = new CancellationTokenSource();
        await using (var abandoned = InstanceThatStepsInAfterTokensAreMade(async context =>
        {
            var requestAborted = context.Transaction.GetHttpRequest()!.HttpContext.RequestAborted;
            var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var registration = requestAborted.Register(aborted.SetResult);
            await clientGoesAway.CancelAsync();
            await aborted.Task.WaitAsync(TimeSpan.FromMinutes(1));
        }))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => PostTokenAsync(abandoned, RefreshForm(client, refreshToken), clientGoesAway.Token));
        }

        await AssertRefreshTokenStillRefreshesAsync(client, refreshToken);
    }

    /// <summary>
    /// The user signs out everywhere (every token of theirs revoked) while a refresh of theirs runs: the refresh must not write "redeemed" over "revoked" and
    /// store a valid successor, which would keep the session alive. It answers invalid_grant and no token stays valid.
    /// Runs on every write path: the revocation gives the entries a new concurrency token.
    /// </summary>
    [SkippableFact]
    public async Task A_refresh_whose_token_is_revoked_while_it_runs_stores_nothing_and_gets_invalid_grant()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        await using var revoking = InstanceThatStepsInAfterTokensAreMade(async () =>
        {
            await using var scope = server.Factory.Services.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>().RevokeBySubjectAsync(user.Id);
        });

        var refreshed = await PostTokenAsync(revoking, RefreshForm(client, tokens.GetProperty("refresh_token").GetString()!));

        var json = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.StatusCode == HttpStatusCode.BadRequest, json.ToString());
        Assert.Equal("invalid_grant", json.GetProperty("error").GetString());
        await using var check = server.Factory.Services.CreateAsyncScope();
        var manager = check.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        await foreach (var entry in manager.FindBySubjectAsync(user.Id))
        {
            Assert.NotEqual(OpenIddictConstants.Statuses.Valid, await manager.GetStatusAsync(entry));
        }
    }

    [SkippableFact]
    public async Task A_code_redemption_that_dies_before_answering_leaves_the_code_redeemable()
    {
        var (client, form) = await CodeRedemptionAsync();

        await using (var crashing = CrashingInstance())
        {
            var died = await PostTokenAsync(crashing, form);
            Assert.Equal(HttpStatusCode.InternalServerError, died.StatusCode);
        }

        var retried = await PostTokenAsync(server.Factory, form);
        var json = JsonDocument.Parse(await retried.Content.ReadAsStringAsync()).RootElement;
        Assert.True(retried.StatusCode == HttpStatusCode.OK, json.ToString());
        var refreshed = await OAuth.RefreshAsync(server, client, json.GetProperty("refresh_token").GetString()!);
        Assert.True(refreshed.StatusCode == HttpStatusCode.OK, (await OAuth.ReadJsonAsync(refreshed)).ToString());
    }

    /// <summary>A new user signed in to a new public client: the client, and the token request that redeems the code it got.</summary>
    private async Task<(TestClient Client, Dictionary<string, string> Form)> CodeRedemptionAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var callback = await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid offline_access", pkce), user);
        return (client, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = client.ClientId,
            ["code"] = callback["code"],
            ["redirect_uri"] = OAuth.AppRedirectUri,
            ["code_verifier"] = pkce.Verifier,
        });
    }
}

/// <summary>No reuse leeway, so only an untouched refresh token can be redeemed again.</summary>
public sealed class SqliteNoReuseLeewayServerFixture : SqliteServerFixture
{
    public SqliteNoReuseLeewayServerFixture() => Settings["Tokens:RefreshTokenReuseLeeway"] = "00:00:00";
}

/// <summary>No reuse leeway, so only an untouched refresh token can be redeemed again.</summary>
public sealed class PostgreSqlNoReuseLeewayServerFixture : PostgreSqlServerFixture
{
    public PostgreSqlNoReuseLeewayServerFixture() => Settings["Tokens:RefreshTokenReuseLeeway"] = "00:00:00";
}

/// <summary>
/// No reuse leeway, and each redeeming request writes through its own SaveChanges instead of the group-commit writer:
/// the path SQL Server takes, and any provider with <c>Performance:GroupCommitTokenWrites</c> off.
/// </summary>
public sealed class SqliteSaveChangesServerFixture : SqliteServerFixture
{
    public SqliteSaveChangesServerFixture()
    {
        Settings["Tokens:RefreshTokenReuseLeeway"] = "00:00:00";
        Settings["Performance:GroupCommitTokenWrites"] = "false";
    }
}

public sealed class SqliteTokenTransactionTests(SqliteNoReuseLeewayServerFixture s)
    : TokenTransactionTests<SqliteNoReuseLeewayServerFixture>(s), IClassFixture<SqliteNoReuseLeewayServerFixture>;

public sealed class PostgreSqlTokenTransactionTests(PostgreSqlNoReuseLeewayServerFixture s)
    : TokenTransactionTests<PostgreSqlNoReuseLeewayServerFixture>(s), IClassFixture<PostgreSqlNoReuseLeewayServerFixture>;

public sealed class SqliteSaveChangesTokenTransactionTests(SqliteSaveChangesServerFixture s)
    : TokenTransactionTests<SqliteSaveChangesServerFixture>(s), IClassFixture<SqliteSaveChangesServerFixture>;
