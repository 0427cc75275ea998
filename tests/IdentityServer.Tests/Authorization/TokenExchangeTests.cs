using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// OAuth 2.0 Token Exchange (RFC 8693): an API that received a user's access token trades it for a narrower one, to
/// call another API on the user's behalf. The user signs in to an app whose token names two APIs; the first API (a
/// confidential client whose client_id is the resource its scope names: a plain name, as a client document allows)
/// exchanges it for a token for the second API alone.
/// </summary>
public abstract class TokenExchangeTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string Grant = "urn:ietf:params:oauth:grant-type:token-exchange";
    private const string AccessTokenType = "urn:ietf:params:oauth:token-type:access_token";

    [SkippableFact]
    public async Task An_api_exchanges_the_users_token_for_one_naming_only_the_api_it_calls()
    {
        var setup = await SignedInAsync();

        var response = await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal(AccessTokenType, json.GetProperty("issued_token_type").GetString());
        Assert.Equal("Bearer", json.GetProperty("token_type").GetString());
        Assert.False(json.TryGetProperty("scope", out _)); // the scope asked for (RFC 8693 2.2.1: sent only when it differs)
        Assert.False(json.TryGetProperty("refresh_token", out _));
        Assert.False(json.TryGetProperty("id_token", out _));

        var exchanged = json.GetProperty("access_token").GetString()!;
        var validated = await OAuth.ValidateJwtAsync(server, exchanged, setup.BackApi.ClientId, "at+jwt");
        Assert.True(validated.IsValid, validated.Exception?.Message);
        var claims = Jwt.Payload(exchanged);
        Assert.Equal(setup.User.Id, claims.GetProperty("sub").GetString());
        Assert.Equal([setup.BackApi.ClientId], Jwt.Strings(claims.GetProperty("aud")));
        Assert.Equal(setup.FrontApi.ClientId, claims.GetProperty("client_id").GetString());
        Assert.False(claims.TryGetProperty("act", out _)); // no actor token: no actor named

        var introspected = await OAuth.IntrospectAsync(server, setup.BackApi, exchanged);
        Assert.True(introspected.GetProperty("active").GetBoolean(), introspected.ToString());
        Assert.Equal(setup.User.Id, introspected.GetProperty("sub").GetString());
    }

    /// <summary>The exchanging client's own access token lifetime (access_token_lifetime) holds for the token it gets.</summary>
    [SkippableFact]
    public async Task An_exchanged_token_lives_as_long_as_the_exchanging_clients_access_tokens()
    {
        var setup = await SignedInAsync();
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
            var api = await applications.FindByClientIdAsync(setup.FrontApi.ClientId);
            var descriptor = new OpenIddictApplicationDescriptor();
            await applications.PopulateAsync(descriptor, api!);
            setup.FrontApi.Document.AccessTokenLifetime = 300;
            IdentityServer.Clients.ClientDescriptorMapper.Populate(descriptor, setup.FrontApi.Document);
            await applications.UpdateAsync(api!, descriptor);
        }

        var json = await OAuth.ReadJsonAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope));

        var claims = Jwt.Payload(json.GetProperty("access_token").GetString()!);
        Assert.Equal(300, claims.GetProperty("exp").GetInt64() - claims.GetProperty("iat").GetInt64());
    }

    /// <summary>With no scope asked for: the subject token's scopes that this client may use, said in the answer (RFC 8693 2.2.1).</summary>
    [SkippableFact]
    public async Task Without_a_scope_the_exchanged_token_keeps_the_subject_tokens_scopes_this_client_may_use()
    {
        var setup = await SignedInAsync(frontApiScopes: s => $"openid {s.Back}");

        var json = await OAuth.ReadJsonAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken));

        var exchanged = json.GetProperty("access_token").GetString()!;
        Assert.Equal(["openid", setup.BackScope], json.GetProperty("scope").GetString()!.Split(' ').Order());
        Assert.Equal([setup.BackApi.ClientId], Jwt.Strings(Jwt.Payload(exchanged).GetProperty("aud")));
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, exchanged)).StatusCode); // openid kept: userinfo answers
    }

    /// <summary>Delegation (RFC 8693 4.1): the API's own token as the actor token names it in <c>act</c>.</summary>
    [SkippableFact]
    public async Task An_actor_token_of_the_client_itself_is_named_in_the_act_claim()
    {
        var setup = await SignedInAsync();
        var actorToken = await ClientCredentialsTokenAsync(setup.FrontApi, setup.FrontScope);

        var response = await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope, actorToken: actorToken);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        var act = Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("act");
        Assert.Equal(JsonValueKind.Object, act.ValueKind);
        Assert.Equal(setup.FrontApi.ClientId, act.GetProperty("sub").GetString());
    }

    /// <summary>An exchanged token exchanged again keeps the earlier actor nested inside the new one (RFC 8693 4.1).</summary>
    [SkippableFact]
    public async Task Exchanging_an_exchanged_token_again_nests_the_earlier_actor()
    {
        var setup = await SignedInAsync(frontApiScopes: s => $"{s.Front} {s.Back}");
        var first = await OAuth.ReadJsonAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope,
            actorToken: await ClientCredentialsTokenAsync(setup.FrontApi, setup.FrontScope)));

        var second = await ExchangeAsync(setup.BackApi, first.GetProperty("access_token").GetString()!, scope: setup.BackScope,
            actorToken: await ClientCredentialsTokenAsync(setup.BackApi, setup.BackScope));

        var json = await OAuth.ReadJsonAsync(second);
        Assert.True(second.StatusCode == HttpStatusCode.OK, json.ToString());
        var act = Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("act");
        Assert.Equal(setup.BackApi.ClientId, act.GetProperty("sub").GetString());
        Assert.Equal(setup.FrontApi.ClientId, act.GetProperty("act").GetProperty("sub").GetString());
    }

    /// <summary>OpenIddict checks the parties of a token that names an audience; one for userinfo only names none.</summary>
    [SkippableFact]
    public async Task A_client_is_refused_a_token_naming_no_audience_that_was_not_issued_to_it()
    {
        var setup = await SignedInAsync(appScopes: _ => "openid profile");
        var stranger = await CreateApiAsync("profile");

        await AssertErrorAsync(await ExchangeAsync(stranger, setup.AccessToken), "invalid_request");
    }

    [SkippableFact]
    public async Task A_client_the_subject_token_was_neither_issued_to_nor_names_is_refused()
    {
        var setup = await SignedInAsync();
        var stranger = await CreateApiAsync(setup.BackScope);

        await AssertErrorAsync(await ExchangeAsync(stranger, setup.AccessToken, scope: setup.BackScope), "invalid_request");
    }

    [SkippableFact]
    public async Task An_actor_token_issued_to_another_client_is_refused()
    {
        var setup = await SignedInAsync();
        var other = await CreateApiAsync(setup.BackScope);

        var response = await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope,
            actorToken: await ClientCredentialsTokenAsync(other, scope: null)); // no scope, no audience: OpenIddict does not check its parties

        await AssertErrorAsync(response, "invalid_request");
    }

    /// <summary>An exchange narrows, never widens: a scope the subject token does not carry is refused even if the client may use it.</summary>
    [SkippableFact]
    public async Task A_scope_beyond_the_subject_tokens_is_refused_with_invalid_scope()
    {
        var setup = await SignedInAsync(appScopes: s => $"openid {s.Front}");

        await AssertErrorAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope), "invalid_scope");
    }

    [SkippableFact]
    public async Task An_audience_that_is_not_a_resource_of_the_scopes_is_refused_with_invalid_target()
    {
        var setup = await SignedInAsync();

        var response = await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope,
            extra: new() { ["audience"] = setup.FrontApi.ClientId });

        await AssertErrorAsync(response, "invalid_target");
    }

    [SkippableFact]
    public async Task An_audience_among_the_resources_narrows_the_token_to_it()
    {
        var setup = await SignedInAsync(frontApiScopes: s => $"{s.Front} {s.Back}");

        var response = await ExchangeAsync(setup.FrontApi, setup.AccessToken, extra: new() { ["audience"] = setup.BackApi.ClientId });

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal([setup.BackApi.ClientId], Jwt.Strings(Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("aud")));
    }

    /// <summary>
    /// An exchange may drop audiences, never add one the subject token does not name: a token the front API narrowed to
    /// the back API, exchanged again by the back API (which may use both scopes), does not reach the front API again.
    /// </summary>
    [SkippableFact]
    public async Task An_exchange_adds_no_audience_the_subject_token_does_not_name()
    {
        var setup = await SignedInAsync(backApiScopes: s => $"{s.Front} {s.Back}");
        var narrowed = (await OAuth.ReadJsonAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: $"{setup.FrontScope} {setup.BackScope}",
            extra: new() { ["audience"] = setup.BackApi.ClientId }))).GetProperty("access_token").GetString()!;
        Assert.Equal([setup.BackApi.ClientId], Jwt.Strings(Jwt.Payload(narrowed).GetProperty("aud")));

        var again = await ExchangeAsync(setup.BackApi, narrowed);

        var json = await OAuth.ReadJsonAsync(again);
        Assert.True(again.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal([setup.BackApi.ClientId], Jwt.Strings(Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("aud")));
        await AssertErrorAsync(await ExchangeAsync(setup.BackApi, narrowed, extra: new() { ["audience"] = setup.FrontApi.ClientId }), "invalid_target");
        await AssertErrorAsync(await ExchangeAsync(setup.BackApi, narrowed, scope: setup.FrontScope), "invalid_target");
    }

    /// <summary>A machine token has no user behind it: there is no one to act on behalf of.</summary>
    [SkippableFact]
    public async Task A_client_credentials_token_as_subject_is_refused_with_invalid_request()
    {
        var setup = await SignedInAsync();
        var machineToken = await ClientCredentialsTokenAsync(setup.FrontApi, setup.FrontScope);

        await AssertErrorAsync(await ExchangeAsync(setup.FrontApi, machineToken), "invalid_request");
    }

    [SkippableFact]
    public async Task Only_access_tokens_are_exchanged()
    {
        var setup = await SignedInAsync();

        var response = await ExchangeAsync(setup.FrontApi, setup.IdentityToken, subjectTokenType: "urn:ietf:params:oauth:token-type:id_token");

        await AssertErrorAsync(response, "invalid_request");
    }

    /// <summary>Bad input gets OAuth's answer, never a server error: garbage, an empty or a truncated token as the subject or actor.</summary>
    [SkippableTheory]
    [InlineData("subject", "not-a-token")]
    [InlineData("subject", "")]
    [InlineData("subject", "truncated")]
    [InlineData("actor", "not-a-token")]
    [InlineData("actor", "truncated")]
    public async Task A_malformed_subject_or_actor_token_is_refused_with_an_oauth_error(string which, string token)
    {
        var setup = await SignedInAsync();
        var value = token == "truncated" ? setup.AccessToken[..(setup.AccessToken.Length - 10)] : token;

        var response = which == "subject"
            ? await ExchangeAsync(setup.FrontApi, value, scope: setup.BackScope)
            : await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope, actorToken: value);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_request", json.GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task A_revoked_subject_token_is_refused()
    {
        var setup = await SignedInAsync();
        Assert.Equal(HttpStatusCode.OK, (await OAuth.RevokeAsync(server, setup.App, setup.AccessToken)).StatusCode);

        var response = await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_request", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    /// <summary>A subject token whose user was locked out since (nothing revoked) is not exchanged.</summary>
    [SkippableFact]
    public async Task A_subject_token_of_a_user_locked_out_since_is_refused()
    {
        var setup = await SignedInAsync();
        await server.LockOutAsync(setup.User);

        await AssertErrorAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope), "invalid_request");
    }

    /// <summary>
    /// The exchanged token stays under the user's grant to the app: a replayed code, which revokes that grant and its
    /// tokens, takes the exchanged token with it.
    /// </summary>
    [SkippableFact]
    public async Task A_replayed_code_ends_the_tokens_exchanged_from_its_access_token()
    {
        var setup = await SignedInAsync();
        var exchanged = (await OAuth.ReadJsonAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope)))
            .GetProperty("access_token").GetString()!;
        Assert.True((await OAuth.IntrospectAsync(server, setup.BackApi, exchanged)).GetProperty("active").GetBoolean());

        var replay = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["client_id"] = setup.App.ClientId, ["code"] = setup.Code,
            ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = setup.Pkce.Verifier,
        });

        Assert.Equal(HttpStatusCode.BadRequest, replay.StatusCode);
        var introspected = await OAuth.IntrospectAsync(server, setup.BackApi, exchanged);
        Assert.False(introspected.GetProperty("active").GetBoolean(), introspected.ToString());
    }

    /// <summary>
    /// An exchange under way when the code is replayed (its subject token checked, its new token not made yet) makes
    /// its token after the replay revoked the grant's tokens: the grant itself is revoked too, so that token is refused.
    /// </summary>
    [SkippableFact]
    public async Task A_token_exchanged_while_its_code_is_replayed_is_refused()
    {
        var setup = await SignedInAsync();
        var paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var exchanging = server.Factory.WithWebHostBuilder(builder => builder.ConfigureServices(services => services.AddOpenIddict().AddServer(options =>
            options.AddEventHandler<ProcessSignInContext>(handler => handler.UseInlineHandler(async context =>
            {
                if (context.Request?.GrantType == Grant && paused.TrySetResult())
                {
                    await resume.Task;
                }
            }).SetOrder(OpenIddictServerHandlers.RedeemTokenEntry.Descriptor.Order - 1)))));
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync("token_endpoint"))
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = Grant, ["subject_token"] = setup.AccessToken, ["subject_token_type"] = AccessTokenType, ["scope"] = setup.BackScope,
            }),
        };
        request.Headers.Authorization = OAuth.BasicAuth(setup.FrontApi);
        var exchange = exchanging.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority }).SendAsync(request);
        await paused.Task.WaitAsync(Hang);

        var replay = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code", ["client_id"] = setup.App.ClientId, ["code"] = setup.Code,
            ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = setup.Pkce.Verifier,
        });
        Assert.Equal(HttpStatusCode.BadRequest, replay.StatusCode);
        resume.SetResult();
        var response = await exchange.WaitAsync(Hang);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString()); // made before anything told it otherwise
        var introspected = await OAuth.IntrospectAsync(server, setup.BackApi, json.GetProperty("access_token").GetString()!);
        Assert.False(introspected.GetProperty("active").GetBoolean(), introspected.ToString());
    }

    /// <summary>A hang guard only: the steps it bounds take milliseconds.</summary>
    private static readonly TimeSpan Hang = TimeSpan.FromMinutes(1);

    [SkippableFact]
    public async Task A_client_not_registered_for_token_exchange_is_refused_with_unauthorized_client()
    {
        var setup = await SignedInAsync();
        var api = await server.CreateConfidentialClientAsync(c => { c.ClientId = Unique.Name("api"); c.Scope = setup.BackScope; });

        await AssertErrorAsync(await ExchangeAsync(api, setup.AccessToken), "unauthorized_client");
    }

    /// <summary>The exchanged token expires with the subject token at the latest: an exchange cannot extend a token's life.</summary>
    [SkippableFact]
    public async Task The_exchanged_token_expires_no_later_than_the_subject_token()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(server.Settings),
            testServices: services => services.AddSingleton<TimeProvider>(clock));
        var clocked = new AttachedServer(factory, server.Provider);
        var setup = await SignedInAsync(on: clocked);

        clock.Advance(TimeSpan.FromMinutes(20)); // of the subject token's hour
        var json = await OAuth.ReadJsonAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: setup.BackScope, on: clocked));

        var subjectExpires = Jwt.Payload(setup.AccessToken).GetProperty("exp").GetInt64();
        Assert.InRange(Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("exp").GetInt64(), subjectExpires - 1, subjectExpires);
        Assert.InRange(json.GetProperty("expires_in").GetInt64(), 40 * 60 - 2, 40 * 60); // dates in whole seconds, rounded twice
    }

    [SkippableFact]
    public async Task Offline_access_is_refused_with_invalid_scope_for_an_exchange_issues_no_refresh_token()
    {
        var setup = await SignedInAsync(appScopes: s => $"openid offline_access {s.Front} {s.Back}", frontApiRefreshes: true);

        await AssertErrorAsync(await ExchangeAsync(setup.FrontApi, setup.AccessToken, scope: $"offline_access {setup.BackScope}"), "invalid_scope");
    }

    /// <summary>
    /// A public client's client_id proves nothing: even one registered for the grant (past the client document's own
    /// check) may not exchange, not even its own token.
    /// </summary>
    [SkippableFact]
    public async Task A_public_client_is_refused_with_unauthorized_client()
    {
        var setup = await SignedInAsync();
        var publicApp = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code", Grant];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = $"openid {setup.BackScope}";
        });
        var own = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), publicApp, setup.User, $"openid {setup.BackScope}");

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = Grant, ["client_id"] = publicApp.ClientId, ["subject_token"] = own.GetProperty("access_token").GetString()!,
            ["subject_token_type"] = AccessTokenType, ["scope"] = setup.BackScope,
        });

        await AssertErrorAsync(response, "unauthorized_client");
    }

    private sealed record Setup(TestClient App, TestUser User, TestClient FrontApi, string FrontScope, TestClient BackApi, string BackScope,
        string AccessToken, string IdentityToken, string Code, Pkce Pkce);

    private sealed record ScopeNames(string Front, string Back);

    /// <summary>
    /// Two APIs, each a confidential client named by its resource with a scope of that resource; an app whose user
    /// signed in for both (or <paramref name="appScopes"/>); both APIs may exchange, the front API for <paramref name="frontApiScopes"/>,
    /// the back API for <paramref name="backApiScopes"/> (by default its own scope).
    /// </summary>
    private async Task<Setup> SignedInAsync(Func<ScopeNames, string>? appScopes = null, Func<ScopeNames, string>? frontApiScopes = null,
        ServerFixture? on = null, bool frontApiRefreshes = false, Func<ScopeNames, string>? backApiScopes = null)
    {
        var target = on ?? server;
        var frontResource = Unique.Name("front-api");
        var backResource = Unique.Name("back-api");
        var names = new ScopeNames(await target.CreateScopeAsync(frontResource), await target.CreateScopeAsync(backResource));
        var frontApi = await CreateApiAsync(frontApiScopes?.Invoke(names) ?? $"{names.Front} {names.Back}", frontResource, target, frontApiRefreshes);
        var backApi = await CreateApiAsync(backApiScopes?.Invoke(names) ?? names.Back, backResource, target);
        var scope = appScopes?.Invoke(names) ?? $"openid {names.Front} {names.Back}";
        var app = await target.CreatePublicClientAsync(scope);
        var user = await target.CreateUserAsync();
        var pkce = Pkce.Create();
        var redirect = await OAuth.AuthorizeAsync(target.CreateBrowser(), await OAuth.AuthorizeUrlAsync(target, app.ClientId, scope, pkce), user);
        var tokens = await OAuth.RedeemAsync(target, app, redirect["code"], pkce);
        return new Setup(app, user, frontApi, names.Front, backApi, names.Back, tokens.GetProperty("access_token").GetString()!,
            tokens.GetProperty("id_token").GetString()!, redirect["code"], pkce);
    }

    private Task<TestClient> CreateApiAsync(string scope, string? resource = null, ServerFixture? on = null, bool refreshes = false) =>
        (on ?? server).CreateConfidentialClientAsync(c =>
    {
        c.ClientId = resource ?? Unique.Name("api");
        c.GrantTypes = refreshes ? ["client_credentials", Grant, "refresh_token"] : ["client_credentials", Grant];
        c.Scope = scope;
    });

    private async Task<string> ClientCredentialsTokenAsync(TestClient client, string? scope)
    {
        var form = new Dictionary<string, string> { ["grant_type"] = "client_credentials" };
        if (scope is not null)
        {
            form["scope"] = scope;
        }

        var response = await OAuth.PostTokenAsync(server, form, client);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json.GetProperty("access_token").GetString()!;
    }

    private Task<HttpResponseMessage> ExchangeAsync(TestClient client, string subjectToken, string? scope = null, string? actorToken = null,
        string subjectTokenType = AccessTokenType, Dictionary<string, string>? extra = null, ServerFixture? on = null)
    {
        var form = new Dictionary<string, string>(extra ?? [])
        {
            ["grant_type"] = Grant, ["subject_token"] = subjectToken, ["subject_token_type"] = subjectTokenType,
        };
        if (scope is not null)
        {
            form["scope"] = scope;
        }

        if (actorToken is not null)
        {
            form["actor_token"] = actorToken;
            form["actor_token_type"] = AccessTokenType;
        }

        return OAuth.PostTokenAsync(on ?? server, form, client);
    }

    private static async Task AssertErrorAsync(HttpResponseMessage response, string error)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"Expected 400, got {(int)response.StatusCode}: {json}");
        Assert.Equal(error, json.GetProperty("error").GetString());
    }
}

public sealed class SqliteTokenExchangeTests(SqliteServerFixture server)
    : TokenExchangeTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlTokenExchangeTests(PostgreSqlServerFixture server)
    : TokenExchangeTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
