using System.Net;
using System.Text.Json;
using IdentityServer.Data;
using IdentityServer.Keys;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// Instances share only the database: a sign-in, a code, a refresh token and a revocation move freely between
/// them, and instances starting together on an empty database do not race.
/// </summary>
public sealed class ScaleOutTests(PostgreSqlServerFixture instanceA) : IClassFixture<PostgreSqlServerFixture>
{
    [SkippableFact]
    public async Task A_user_signed_in_on_one_instance_completes_every_step_on_another()
    {
        await using var secondFactory = instanceA.StartServer();
        var instanceB = new AttachedServer(secondFactory, DatabaseProvider.PostgreSql);
        var client = await instanceA.CreatePublicClientAsync(consentType: "explicit");
        var user = await instanceA.CreateUserAsync();

        // Sign in on A.
        var browser = instanceA.CreateBrowser();
        var login = await browser.NavigateAsync("/account/login".InAuthority());
        await OAuth.SignInAsync(browser, login, user);

        // Authorize (with its consent form and antiforgery token) and redeem the code on B.
        browser.AddHost(TestServerFactory.Authority.Host, secondFactory.Server.CreateHandler());
        var pkce = Pkce.Create();
        var callback = await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(instanceB, client.ClientId, "openid offline_access", pkce), user: null);
        var tokens = await OAuth.RedeemAsync(instanceB, client, callback["code"], pkce);

        // Refresh on A.
        var refreshed = await OAuth.RefreshAsync(instanceA, client, tokens.GetProperty("refresh_token").GetString()!);
        var refreshedJson = await OAuth.ReadJsonAsync(refreshed);
        Assert.True(refreshed.IsSuccessStatusCode, refreshedJson.ToString());
        var refreshToken = refreshedJson.GetProperty("refresh_token").GetString()!;

        // Revoke on B; refreshing on A then fails.
        var revocation = await instanceB.CreateClient().PostAsync(await instanceB.EndpointAsync("revocation_endpoint"), new FormUrlEncodedContent(
            new Dictionary<string, string> { ["client_id"] = client.ClientId, ["token"] = refreshToken, ["token_type_hint"] = "refresh_token" }));
        Assert.Equal(HttpStatusCode.OK, revocation.StatusCode);
        var afterRevocation = await OAuth.RefreshAsync(instanceA, client, refreshToken);
        Assert.Equal(HttpStatusCode.BadRequest, afterRevocation.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(afterRevocation)).GetProperty("error").GetString());

        Assert.Equal(await JwksAsync(instanceA), await JwksAsync(instanceB));
    }

    [SkippableFact]
    public async Task Two_instances_starting_together_on_an_empty_database_share_one_set_of_keys()
    {
        Skip.IfNot(PostgreSqlCluster.IsAvailable, PostgreSqlCluster.InstallHint);
        var cluster = await PostgreSqlCluster.SharedAsync();
        var connectionString = await cluster.CreateDatabaseAsync();
        var settings = new Dictionary<string, string?>
        {
            ["Database:Provider"] = "PostgreSql",
            ["ConnectionStrings:IdentityServer"] = connectionString,
            ["Seed:Scopes:0:name"] = "shared-api",
            ["Seed:Clients:0:client_id"] = "shared-machine",
            ["Seed:Clients:0:client_secret"] = "shared-machine-secret-1234",
            ["Seed:Clients:0:grant_types:0"] = "client_credentials",
            ["Seed:Clients:0:scope"] = "shared-api",
        };

        var starting = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            var factory = new TestServerFactory(settings);
            factory.StartServer();
            return factory;
        })).ToList();
        var factories = await Task.WhenAll(starting);
        try
        {
            var servers = factories.Select(f => new AttachedServer(f, DatabaseProvider.PostgreSql)).ToList();
            Assert.Equal(await JwksAsync(servers[0]), await JwksAsync(servers[1]));

            await using (var scope = factories[0].Services.CreateAsyncScope())
            {
                var keys = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().StoredKeys.AsNoTracking().ToListAsync();
                Assert.Single(keys, k => k.Use == StoredKey.SigningUse);
                Assert.Single(keys, k => k.Use == StoredKey.EncryptionUse);

                // The migration lock went with its own connection: nothing pooled still holds it.
                var advisoryLocks = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Database
                    .SqlQuery<long>($"""
                        SELECT count(*) AS "Value" FROM pg_locks
                        WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        """).SingleAsync();
                Assert.Equal(0, advisoryLocks);
            }

            foreach (var server in servers)
            {
                var token = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), "shared-machine", "shared-machine-secret-1234", "shared-api");
                Assert.Equal(HttpStatusCode.OK, token.StatusCode);
            }
        }
        finally
        {
            foreach (var factory in factories)
            {
                await factory.DisposeAsync();
            }

            await cluster.DropDatabaseAsync(connectionString);
        }
    }

    private static async Task<string> JwksAsync(ServerFixture server)
    {
        var jwks = await server.CreateClient().GetStringAsync(await server.EndpointAsync("jwks_uri"));
        return JsonDocument.Parse(jwks).RootElement.GetProperty("keys").ToString();
    }
}

internal static class AuthorityPaths
{
    public static string InAuthority(this string path) => new Uri(TestServerFactory.Authority, path).ToString();
}
