using OpenIddict.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using System.Net;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Keys;
using System.Text.Json.Nodes;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// Refresh tokens: rotated on every use, keeping the user's sign-in; a redeemed one presented again revokes the
/// chain. The fixture runs the server with no reuse leeway, so "presented again after the leeway" needs no wait.
/// </summary>
public abstract class RefreshTokenTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    /// <summary>A user locked out since the sign-in (nothing revoked) gets no new tokens: the grant's user must still be able to sign in.</summary>
    [SkippableFact]
    public async Task A_refresh_for_a_user_locked_out_since_is_refused_with_invalid_grant()
    {
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        await server.LockOutAsync(user);

        var response = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task A_refresh_rotates_the_refresh_token_and_keeps_the_sign_in_and_audiences()
    {
        var resource = $"https://{Unique.Name("api")}.test/";
        var apiScope = await server.CreateScopeAsync(resource);
        var client = await server.CreatePublicClientAsync($"openid profile offline_access {apiScope}");
        var user = await server.CreateUserAsync();
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, $"openid profile offline_access {apiScope}");

        var response = await OAuth.RefreshAsync(server, client, first.GetProperty("refresh_token").GetString()!);

        var second = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, second.ToString());
        Assert.NotEqual(first.GetProperty("refresh_token").GetString(), second.GetProperty("refresh_token").GetString());

        var firstId = Jwt.Payload(first.GetProperty("id_token").GetString()!);
        var secondIdToken = second.GetProperty("id_token").GetString()!;
        var idResult = await OAuth.ValidateJwtAsync(server, secondIdToken, audience: client.ClientId);
        Assert.True(idResult.IsValid, idResult.Exception?.ToString());
        var secondId = Jwt.Payload(secondIdToken);
        foreach (var claim in new[] { "sub", "auth_time", "azp" })
        {
            Assert.True(firstId.TryGetProperty(claim, out var before), $"The first id token has no {claim}: {firstId}");
            Assert.True(secondId.TryGetProperty(claim, out var after), $"The refreshed id token has no {claim}: {secondId}");
            Assert.Equal(before.ToString(), after.ToString());
        }

        Assert.Equal(user.Id, secondId.GetProperty("sub").GetString());
        Assert.Equal(client.ClientId, secondId.GetProperty("azp").GetString());

        var firstAccess = Jwt.Payload(first.GetProperty("access_token").GetString()!);
        var secondAccessToken = second.GetProperty("access_token").GetString()!;
        var secondAccess = Jwt.Payload(secondAccessToken);
        Assert.Equal([resource], Jwt.Strings(firstAccess.GetProperty("aud")));
        Assert.Equal(Jwt.Strings(firstAccess.GetProperty("aud")), Jwt.Strings(secondAccess.GetProperty("aud")));
        Assert.Equal(firstAccess.GetProperty("scope").GetString(), secondAccess.GetProperty("scope").GetString());
        Assert.Equal("at+jwt", Jwt.Header(secondAccessToken).GetProperty("typ").GetString());

        // The rotated token works in its turn.
        var third = await OAuth.RefreshAsync(server, client, second.GetProperty("refresh_token").GetString()!);
        Assert.True(third.IsSuccessStatusCode, (await OAuth.ReadJsonAsync(third)).ToString());
    }

    [SkippableFact]
    public async Task Each_claim_goes_to_the_tokens_it_is_meant_for_before_and_after_a_refresh()
    {
        const string scope = "openid profile email offline_access";
        var client = await server.CreatePublicClientAsync(scope);
        var user = await server.CreateUserAsync();
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, scope);
        var refreshed = await OAuth.RefreshAsync(server, client, first.GetProperty("refresh_token").GetString()!);
        var second = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.IsSuccessStatusCode, second.ToString());

        foreach (var tokens in new[] { first, second })
        {
            var access = Jwt.Payload(tokens.GetProperty("access_token").GetString()!);
            var id = Jwt.Payload(tokens.GetProperty("id_token").GetString()!);

            // The user's claims go to both tokens; when the user signed in goes to the client only.
            foreach (var payload in new[] { access, id })
            {
                Assert.Equal(user.UserName, payload.GetProperty("preferred_username").GetString());
                Assert.Equal(user.Email, payload.GetProperty("email").GetString());
                Assert.False(payload.TryGetProperty("AspNet.Identity.SecurityStamp", out _), payload.ToString());
            }

            Assert.True(id.TryGetProperty("auth_time", out _), id.ToString());
            Assert.False(access.TryGetProperty("auth_time", out _), access.ToString());
        }
    }

    /// <summary>
    /// Codes and refresh tokens carry what redeeming them needs and not what the token endpoint makes afresh
    /// (Performance/LeanGrantTokens): no map of claim destinations (OpenIddict's <c>oi_cl_dstn</c>), no user claims, and
    /// in a refresh token nothing only a code's redemption checks. The tokens made from them still have their claims.
    /// </summary>
    [SkippableFact]
    public async Task Codes_and_refresh_tokens_carry_what_their_redemption_needs_and_no_more()
    {
        const string scopes = "openid profile email offline_access";
        var client = await server.CreatePublicClientAsync(scopes);
        var user = await server.CreateUserAsync();
        var pkce = Pkce.Create();
        var authorized = await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, scopes, pkce), user);
        var first = await OAuth.RedeemAsync(server, client, authorized["code"], pkce);
        var refreshed = await OAuth.RefreshAsync(server, client, first.GetProperty("refresh_token").GetString()!);
        var second = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.IsSuccessStatusCode, second.ToString());
        Assert.Equal(user.Email, Jwt.Payload(second.GetProperty("id_token").GetString()!).GetProperty("email").GetString());
        Assert.Equal(user.Email, Jwt.Payload(second.GetProperty("access_token").GetString()!).GetProperty("email").GetString());

        // A code is a reference to its entry, which holds the token itself.
        string codeToken;
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var tokens = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
            codeToken = (await tokens.GetPayloadAsync((await tokens.FindByReferenceIdAsync(authorized["code"]))!))!;
        }

        var code = Decrypted(codeToken);
        Assert.True(code.TryGetPayloadValue<string>("oi_cd_chlg", out _), Base64UrlEncoder.Decode(code.EncodedPayload));
        foreach (var token in new[] { first, second }.Select(t => Decrypted(t.GetProperty("refresh_token").GetString()!)).Prepend(code))
        {
            var payload = Base64UrlEncoder.Decode(token.EncodedPayload);
            Assert.Equal(user.Id, token.GetPayloadValue<string>("sub"));
            Assert.True(token.TryGetPayloadValue<string>("oi_au_id", out _), payload);
            foreach (var leftOut in new[] { "oi_cl_dstn", "email", "email_verified", "name", "preferred_username" })
            {
                Assert.False(token.TryGetPayloadValue<object>(leftOut, out _), $"{leftOut}: {payload}");
            }

            if (token != code)
            {
                foreach (var leftOut in new[] { "oi_reduri", "oi_cd_chlg", "oi_cd_chlg_meth", "oi_nce" })
                {
                    Assert.False(token.TryGetPayloadValue<object>(leftOut, out _), $"{leftOut}: {payload}");
                }
            }
        }
    }

    /// <summary>
    /// A refresh token made while refresh tokens still carried the map of destinations (OpenIddict's default) is
    /// redeemed as before, and the refresh token it gets in return carries no map, not even the old one as a claim.
    /// </summary>
    [SkippableFact]
    public async Task A_refresh_token_carrying_a_map_of_destinations_still_works_and_its_successor_carries_none()
    {
        const string scope = "openid email offline_access";
        var client = await server.CreatePublicClientAsync(scope);
        var user = await server.CreateUserAsync();
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, scope);
        var keys = server.Factory.Services.GetRequiredService<KeyRing>();
        var genuine = new JsonWebToken(first.GetProperty("refresh_token").GetString()!);
        var inner = Decrypted(genuine.EncodedToken);
        var payload = JsonNode.Parse(Base64UrlEncoder.Decode(inner.EncodedPayload))!.AsObject();
        payload["oi_cl_dstn"] = new JsonObject { ["email"] = new JsonArray("access_token", "id_token"), ["sub"] = new JsonArray("access_token") };
        var handler = new JsonWebTokenHandler();
        var earlierFormat = handler.EncryptToken(
            handler.CreateToken(payload.ToJsonString(), keys.InternalSigningCredentials, new Dictionary<string, object> { ["typ"] = inner.Typ }),
            keys.ActiveEncryptionCredentials, new Dictionary<string, object> { ["typ"] = genuine.Typ });

        var refreshed = await OAuth.RefreshAsync(server, client, earlierFormat);
        var second = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.IsSuccessStatusCode, second.ToString());
        Assert.Equal(user.Email, Jwt.Payload(second.GetProperty("id_token").GetString()!).GetProperty("email").GetString());
        var successor = Decrypted(second.GetProperty("refresh_token").GetString()!);
        Assert.False(successor.TryGetPayloadValue<object>("oi_cl_dstn", out _), Base64UrlEncoder.Decode(successor.EncodedPayload));
    }

    /// <summary>The signed token inside an encrypted code or refresh token, decrypted with the server's active key.</summary>
    private JsonWebToken Decrypted(string token) => new(new JsonWebTokenHandler().DecryptToken(new JsonWebToken(token),
        new TokenValidationParameters { TokenDecryptionKeys = [server.Factory.Services.GetRequiredService<KeyRing>().ActiveEncryptionCredentials.Key] }));

    [SkippableFact]
    public async Task Access_and_refresh_tokens_are_stored_and_identity_tokens_are_not()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        Assert.True((await OAuth.RefreshAsync(server, client, first.GetProperty("refresh_token").GetString()!)).IsSuccessStatusCode);

        var types = new List<string?>();
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var tokens = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
            await foreach (var token in tokens.FindBySubjectAsync(user.Id))
            {
                types.Add((await tokens.GetTypeAsync(token))?.Split(':')[^1]);
            }
        }

        Assert.Equal(["access_token", "access_token", "authorization_code", "refresh_token", "refresh_token"], types.Order());
        Assert.True(first.TryGetProperty("id_token", out _), first.ToString());
    }

    /// <summary>A refresh may narrow its scopes but not widen them (RFC 6749 6); asking for more is invalid_scope (5.2).</summary>
    [SkippableFact]
    public async Task A_refresh_asking_for_a_scope_not_granted_is_refused_with_invalid_scope_and_one_asking_for_fewer_is_not()
    {
        var client = await server.CreatePublicClientAsync("openid profile offline_access");
        var user = await server.CreateUserAsync();
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var refreshToken = first.GetProperty("refresh_token").GetString()!;

        var wider = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["client_id"] = client.ClientId, ["refresh_token"] = refreshToken, ["scope"] = "openid profile offline_access",
        });
        var json = await OAuth.ReadJsonAsync(wider);
        Assert.True(wider.StatusCode == HttpStatusCode.BadRequest, json.ToString());
        Assert.Equal("invalid_scope", json.GetProperty("error").GetString());
        Assert.Contains("'profile'", json.GetProperty("error_description").GetString());

        // Refused before anything was redeemed: the same refresh token still works, and may ask for fewer scopes.
        var narrower = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["client_id"] = client.ClientId, ["refresh_token"] = refreshToken, ["scope"] = "openid",
        });
        var narrowed = await OAuth.ReadJsonAsync(narrower);
        Assert.True(narrower.IsSuccessStatusCode, narrowed.ToString());
        Assert.Equal("openid", Jwt.Payload(narrowed.GetProperty("access_token").GetString()!).GetProperty("scope").GetString());
    }

    /// <summary>
    /// An access token for scopes that name no API (a token for userinfo) has the issuer as its audience (RFC 9068 2.2
    /// requires one), as has one a refresh narrowed to such scopes; with an API's scope, that API only.
    /// </summary>
    [SkippableFact]
    public async Task An_access_token_for_no_api_names_the_issuer_as_its_audience()
    {
        var resource = $"https://{Unique.Name("api")}.test/";
        var apiScope = await server.CreateScopeAsync(resource);
        var scope = $"openid profile offline_access {apiScope}";
        var client = await server.CreatePublicClientAsync(scope);
        var user = await server.CreateUserAsync();
        var issuer = await server.EndpointAsync("issuer");

        var userinfoOnly = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid profile");
        Assert.Equal([issuer], Jwt.Strings(Jwt.Payload(userinfoOnly.GetProperty("access_token").GetString()!).GetProperty("aud")));
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, userinfoOnly.GetProperty("access_token").GetString()!)).StatusCode);

        var withApi = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, scope);
        Assert.Equal([resource], Jwt.Strings(Jwt.Payload(withApi.GetProperty("access_token").GetString()!).GetProperty("aud")));
        var narrowing = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["client_id"] = client.ClientId, ["refresh_token"] = withApi.GetProperty("refresh_token").GetString()!,
            ["scope"] = "openid profile",
        });
        var narrowed = await OAuth.ReadJsonAsync(narrowing);
        Assert.True(narrowing.IsSuccessStatusCode, narrowed.ToString());
        Assert.Equal([issuer], Jwt.Strings(Jwt.Payload(narrowed.GetProperty("access_token").GetString()!).GetProperty("aud")));
    }

    /// <summary>
    /// A refresh for fewer scopes gets an access token for those only: the audiences of the scopes left, and the user
    /// claims of those scopes only (in the identity token too), so the API of a scope left out does not take it. The
    /// new refresh token keeps the grant's scopes (RFC 6749 6), and a refreshed identity token has no nonce.
    /// </summary>
    [SkippableFact]
    public async Task A_refresh_for_fewer_scopes_gets_tokens_for_those_only_and_its_refresh_token_keeps_the_grant()
    {
        var (kept, leftOut) = ($"https://{Unique.Name("kept")}.test/", $"https://{Unique.Name("left-out")}.test/");
        var (keptScope, leftOutScope) = (await server.CreateScopeAsync(kept), await server.CreateScopeAsync(leftOut));
        var scope = $"openid profile email offline_access {keptScope} {leftOutScope}";
        var client = await server.CreatePublicClientAsync(scope);
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, await server.CreateUserAsync(), scope);
        Assert.True(Jwt.Payload(first.GetProperty("id_token").GetString()!).TryGetProperty("nonce", out _), first.ToString());

        var narrowing = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token", ["client_id"] = client.ClientId, ["refresh_token"] = first.GetProperty("refresh_token").GetString()!,
            ["scope"] = $"openid email {keptScope}",
        });
        var narrowed = await OAuth.ReadJsonAsync(narrowing);
        Assert.True(narrowing.IsSuccessStatusCode, narrowed.ToString());

        var access = Jwt.Payload(narrowed.GetProperty("access_token").GetString()!);
        Assert.Equal([kept], Jwt.Strings(access.GetProperty("aud")));
        var id = Jwt.Payload(narrowed.GetProperty("id_token").GetString()!);
        foreach (var payload in new[] { access, id })
        {
            Assert.True(payload.TryGetProperty("email", out _), payload.ToString());
            Assert.False(payload.TryGetProperty("preferred_username", out _), payload.ToString());
            Assert.False(payload.TryGetProperty("name", out _), payload.ToString());
        }

        Assert.False(id.TryGetProperty("nonce", out _), id.ToString());

        var again = await OAuth.RefreshAsync(server, client, narrowed.GetProperty("refresh_token").GetString()!);
        var whole = await OAuth.ReadJsonAsync(again);
        Assert.True(again.IsSuccessStatusCode, whole.ToString());
        var wholeAccess = Jwt.Payload(whole.GetProperty("access_token").GetString()!);
        Assert.Equal(new[] { kept, leftOut }.Order(), Jwt.Strings(wholeAccess.GetProperty("aud")).Order());
        Assert.True(wholeAccess.TryGetProperty("preferred_username", out _), wholeAccess.ToString());
    }

    [SkippableFact]
    public async Task Refresh_token_reuse_is_refused_and_revokes_the_chain()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var first = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var oldRefreshToken = first.GetProperty("refresh_token").GetString()!;
        var rotated = await OAuth.ReadJsonAsync(await OAuth.RefreshAsync(server, client, oldRefreshToken));
        var newestRefreshToken = rotated.GetProperty("refresh_token").GetString()!;
        var newestAccessToken = rotated.GetProperty("access_token").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await OAuth.UserInfoAsync(server, newestAccessToken)).StatusCode);

        var replay = await OAuth.RefreshAsync(server, client, oldRefreshToken);

        Assert.Equal(HttpStatusCode.BadRequest, replay.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(replay)).GetProperty("error").GetString());

        var newest = await OAuth.RefreshAsync(server, client, newestRefreshToken);
        Assert.Equal(HttpStatusCode.BadRequest, newest.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(newest)).GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.Unauthorized, (await OAuth.UserInfoAsync(server, newestAccessToken)).StatusCode);
    }
}

/// <summary>SQLite, with no refresh token reuse leeway.</summary>
public sealed class NoReuseLeewaySqliteServerFixture : SqliteServerFixture
{
    public NoReuseLeewaySqliteServerFixture() => Settings["Tokens:RefreshTokenReuseLeeway"] = "00:00:00";
}

public sealed class SqliteRefreshTokenTests(NoReuseLeewaySqliteServerFixture server)
    : RefreshTokenTests<NoReuseLeewaySqliteServerFixture>(server), IClassFixture<NoReuseLeewaySqliteServerFixture>;

/// <summary>PostgreSQL, with no refresh token reuse leeway.</summary>
public sealed class NoReuseLeewayPostgreSqlServerFixture : PostgreSqlServerFixture
{
    public NoReuseLeewayPostgreSqlServerFixture() => Settings["Tokens:RefreshTokenReuseLeeway"] = "00:00:00";
}

public sealed class PostgreSqlRefreshTokenTests(NoReuseLeewayPostgreSqlServerFixture server)
    : RefreshTokenTests<NoReuseLeewayPostgreSqlServerFixture>(server), IClassFixture<NoReuseLeewayPostgreSqlServerFixture>;
