using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// Each sign-in's tokens form one grant: revoking its refresh token (RFC 7009 2.1), a replayed code or a reused refresh
/// token ends that sign-in's access and refresh tokens, while the same user's other sign-in with the same client (another
/// browser, another device) keeps working, and so does the remembered consent.
/// </summary>
public abstract class GrantRevocationTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task Revoking_a_refresh_token_ends_the_access_tokens_of_its_sign_in_and_no_other()
    {
        var (client, revoked, kept) = await TwoSignInsAsync();

        var response = await OAuth.RevokeAsync(server, client, revoked.RefreshToken, "refresh_token");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, revoked.AccessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await OAuth.RefreshAsync(server, client, revoked.RefreshToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, kept.AccessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.RefreshAsync(server, client, kept.RefreshToken)).StatusCode);
    }

    /// <summary>Revoking an access token ends that token only (RFC 7009 leaves the rest to the server): its refresh token still works.</summary>
    [SkippableFact]
    public async Task Revoking_an_access_token_leaves_its_refresh_token()
    {
        var (client, signIn, _) = await TwoSignInsAsync();

        Assert.Equal(HttpStatusCode.OK, (await OAuth.RevokeAsync(server, client, signIn.AccessToken, "access_token")).StatusCode);

        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, signIn.AccessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.RefreshAsync(server, client, signIn.RefreshToken)).StatusCode);
    }

    [SkippableFact]
    public async Task A_replayed_code_ends_the_tokens_of_its_sign_in_and_no_other()
    {
        var (client, replayed, kept) = await TwoSignInsAsync();

        var replay = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["client_id"] = client.ClientId, ["code"] = replayed.Code,
            ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = replayed.Pkce.Verifier,
        });

        Assert.Equal(HttpStatusCode.BadRequest, replay.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, replayed.AccessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await OAuth.RefreshAsync(server, client, replayed.RefreshToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, kept.AccessToken)).StatusCode);
        Assert.Equal(Statuses.Revoked, await StoredGrantStatusAsync(replayed.AccessToken)); // the grant too, not only its tokens
        Assert.Equal(Statuses.Valid, await StoredGrantStatusAsync(kept.AccessToken));
    }

    /// <summary>
    /// A replaying client that hangs up (here: the request's cancellation fires as its code is checked, on an instance
    /// made for it) still ends the grant, and is answered invalid_grant, not a server error.
    /// </summary>
    [SkippableFact]
    public async Task A_replay_whose_client_hangs_up_still_ends_the_grant()
    {
        var (client, replayed, kept) = await TwoSignInsAsync();
        await using var hangingUp = server.Factory.WithWebHostBuilder(builder => builder.ConfigureServices(services => services.AddOpenIddict().AddServer(options =>
            options.AddEventHandler<ValidateTokenContext>(handler => handler.UseInlineHandler(context =>
            {
                context.Transaction.CancellationToken = new CancellationToken(canceled: true);
                return default;
            }).SetOrder(OpenIddictServerHandlers.Protection.ValidateTokenEntry.Descriptor.Order - 1)))));
        using var http = hangingUp.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        var replay = await http.PostAsync(await server.EndpointAsync("token_endpoint"), new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["client_id"] = client.ClientId, ["code"] = replayed.Code,
            ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = replayed.Pkce.Verifier,
        }));

        Assert.Equal(HttpStatusCode.BadRequest, replay.StatusCode);
        Assert.Equal(Statuses.Revoked, await StoredGrantStatusAsync(replayed.AccessToken));
        Assert.Equal(Statuses.Valid, await StoredGrantStatusAsync(kept.AccessToken));
    }

    /// <summary>A redeemed refresh token presented again (the fixture allows no leeway) ends its own chain only.</summary>
    [SkippableFact]
    public async Task A_reused_refresh_token_ends_its_own_chain_and_no_other()
    {
        var (client, reused, kept) = await TwoSignInsAsync();
        Assert.Equal(HttpStatusCode.OK, (await OAuth.RefreshAsync(server, client, reused.RefreshToken)).StatusCode);

        var reuse = await OAuth.RefreshAsync(server, client, reused.RefreshToken);

        Assert.Equal(HttpStatusCode.BadRequest, reuse.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, reused.AccessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, kept.AccessToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.RefreshAsync(server, client, kept.RefreshToken)).StatusCode);
        Assert.Equal(Statuses.Revoked, await StoredGrantStatusAsync(reused.AccessToken));
        Assert.Equal(Statuses.Valid, await StoredGrantStatusAsync(kept.AccessToken));
    }

    /// <summary>The status of the token's grant (its authorization) as stored, read in a scope of its own.</summary>
    private async Task<string?> StoredGrantStatusAsync(string accessToken)
    {
        var authorizationId = Jwt.Payload(accessToken).GetProperty("oi_au_id").GetString()!;
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictAuthorizationManager>();
        return await manager.GetStatusAsync((await manager.FindByIdAsync(authorizationId))!);
    }

    /// <summary>Consent is remembered apart from any grant: after a sign-in's tokens are revoked, the next sign-in is not asked again.</summary>
    [SkippableFact]
    public async Task Revoking_a_sign_ins_tokens_keeps_the_remembered_consent()
    {
        var client = await server.CreatePublicClientAsync(Scope, consentType: "explicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var first = await SignInAsync(client, user, browser); // consents on the way
        await OAuth.RevokeAsync(server, client, first.RefreshToken, "refresh_token");

        var second = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, Pkce.Create()), OAuth.IsApp);

        Assert.True(second.RedirectTarget is not null && OAuth.IsApp(second.RedirectTarget), $"Expected no consent page, got {(int)second.Status} at {second.Uri}");
        Assert.Contains("code=", second.RedirectTarget!.Query);
    }

    /// <summary>
    /// A refresh that lands while its refresh token's revocation is under way (the revocation has read the token, not yet
    /// revoked it): the revocation still answers 200 and ends the grant, the tokens that refresh just got included. It
    /// used to find the token changed under it, answer unsupported_token_type and leave the new tokens working.
    /// </summary>
    [SkippableFact]
    public async Task A_refresh_landing_during_its_refresh_tokens_revocation_is_ended_with_the_grant()
    {
        var (client, revoked, kept) = await TwoSignInsAsync();
        var paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var revoking = InstanceThatPausesRevocations(paused, resume.Task);
        using var http = revoking.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        var revocation = http.PostAsync(await server.EndpointAsync("revocation_endpoint"), new FormUrlEncodedContent(
            new Dictionary<string, string> { ["client_id"] = client.ClientId, ["token"] = revoked.RefreshToken }));
        await paused.Task.WaitAsync(Hang);
        var refresh = await OAuth.RefreshAsync(server, client, revoked.RefreshToken);
        var refreshed = await OAuth.ReadJsonAsync(refresh);
        Assert.True(refresh.StatusCode == HttpStatusCode.OK, refreshed.ToString());
        resume.SetResult();
        var response = await revocation.WaitAsync(Hang);

        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, refreshed.GetProperty("access_token").GetString()!)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await OAuth.RefreshAsync(server, client, refreshed.GetProperty("refresh_token").GetString()!)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, kept.AccessToken)).StatusCode);
    }

    /// <summary>A hang guard only: the steps it bounds take milliseconds.</summary>
    private static readonly TimeSpan Hang = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Another instance on the same database whose first revocation request stops once the token is read and validated,
    /// before anything is revoked, says so through <paramref name="paused"/> and goes on when <paramref name="resume"/> completes.
    /// </summary>
    private WebApplicationFactory<Program> InstanceThatPausesRevocations(TaskCompletionSource paused, Task resume) =>
        server.Factory.WithWebHostBuilder(builder => builder.ConfigureServices(services => services.AddOpenIddict().AddServer(options =>
            options.AddEventHandler<HandleRevocationRequestContext>(handler => handler.UseInlineHandler(async _ =>
            {
                if (paused.TrySetResult())
                {
                    await resume;
                }
            }).SetOrder(OpenIddictServerHandlers.Revocation.AttachPrincipal.Descriptor.Order + 1)))));

    private const string Scope = "openid offline_access";

    private sealed record SignIn(string AccessToken, string RefreshToken, string Code, Pkce Pkce);

    /// <summary>One user signed in to one client from two browsers.</summary>
    private async Task<(TestClient Client, SignIn First, SignIn Second)> TwoSignInsAsync()
    {
        var client = await server.CreatePublicClientAsync(Scope);
        var user = await server.CreateUserAsync();
        return (client, await SignInAsync(client, user, server.CreateBrowser()), await SignInAsync(client, user, server.CreateBrowser()));
    }

    private async Task<SignIn> SignInAsync(TestClient client, TestUser user, Browser browser)
    {
        var pkce = Pkce.Create();
        var redirect = await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, client.ClientId, Scope, pkce), user);
        var tokens = await OAuth.RedeemAsync(server, client, redirect["code"], pkce);
        return new SignIn(tokens.GetProperty("access_token").GetString()!, tokens.GetProperty("refresh_token").GetString()!, redirect["code"], pkce);
    }
}

public sealed class SqliteGrantRevocationTests(NoReuseLeewaySqliteServerFixture server)
    : GrantRevocationTests<NoReuseLeewaySqliteServerFixture>(server), IClassFixture<NoReuseLeewaySqliteServerFixture>;

public sealed class PostgreSqlGrantRevocationTests(NoReuseLeewayPostgreSqlServerFixture server)
    : GrantRevocationTests<NoReuseLeewayPostgreSqlServerFixture>(server), IClassFixture<NoReuseLeewayPostgreSqlServerFixture>;
