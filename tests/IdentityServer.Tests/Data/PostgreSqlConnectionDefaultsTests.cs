using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Tests.Data;

/// <summary>
/// On PostgreSQL the server's connections prepare the statements they run repeatedly (Npgsql's auto-prepare) and go
/// back to the pool without Npgsql's reset, unless the operator's connection string sets <c>Max Auto Prepare</c> (for
/// example 0 behind a pooler that cannot keep prepared statements) or <c>No Reset On Close</c> itself.
/// </summary>
public sealed class PostgreSqlConnectionDefaultsTests(PostgreSqlServerFixture server) : IClassFixture<PostgreSqlServerFixture>
{
    [SkippableFact]
    public async Task A_query_run_repeatedly_on_a_connection_is_prepared_on_the_server()
    {
        Assert.True(await PreparedStatementsAfterRepeatedQueryAsync(server.Factory.Services) > 0);
    }

    /// <summary>
    /// A statement that fails in the database on the use Npgsql auto-prepares it on (the fifth) leaves the connection's
    /// prepared statement broken (npgsql/npgsql#6391): its next use failed with "Received unexpected backend message
    /// DataRow". The server unprepares the connection's statements after such a failure.
    /// </summary>
    [SkippableFact]
    public async Task A_statement_that_fails_on_the_use_it_is_prepared_on_still_runs_on_that_connection_afterwards()
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        await db.Database.OpenConnectionAsync();
        async Task<int> DivideAsync(int divisor) =>
            await db.Database.SqlQueryRaw<int>("SELECT 12 / {0} AS \"Value\"", divisor).SingleAsync();

        for (var use = 1; use <= 4; use++)
        {
            Assert.Equal(12, await DivideAsync(1));
        }

        var failure = await Assert.ThrowsAsync<PostgresException>(() => DivideAsync(0));
        Assert.Equal(PostgresErrorCodes.DivisionByZero, failure.SqlState);

        for (var use = 6; use <= 10; use++)
        {
            Assert.Equal(6, await DivideAsync(2));
        }
    }

    [SkippableFact]
    public async Task A_connection_string_that_sets_max_auto_prepare_is_kept()
    {
        var connectionString = new NpgsqlConnectionStringBuilder(server.Settings["ConnectionStrings:IdentityServer"]) { MaxAutoPrepare = 0 };
        await using var unprepared = server.StartServer(new Dictionary<string, string?>
        {
            ["ConnectionStrings:IdentityServer"] = connectionString.ToString(),
        });

        Assert.Equal(0, await PreparedStatementsAfterRepeatedQueryAsync(unprepared.Services));
    }

    [SkippableFact]
    public async Task A_pooled_connection_is_reused_without_a_reset()
    {
        Assert.Equal("kept", await SessionSettingAfterReturnToPoolAsync(new NpgsqlConnectionStringBuilder(server.Settings["ConnectionStrings:IdentityServer"])));
    }

    [SkippableFact]
    public async Task A_connection_string_that_asks_for_the_reset_is_kept()
    {
        var connectionString = new NpgsqlConnectionStringBuilder(server.Settings["ConnectionStrings:IdentityServer"]) { NoResetOnClose = false };

        Assert.Equal("", await SessionSettingAfterReturnToPoolAsync(connectionString));
    }

    /// <summary>
    /// The token reader keeps connections open for the next lookup, out of the pool EF Core draws from too. With a
    /// small pool it must leave most of it to everything else: a burst of lookups as large as the pool, then a token
    /// request (its client looked up and its entry written through EF Core) still gets its connections.
    /// </summary>
    [SkippableFact]
    public async Task With_a_small_pool_token_lookups_leave_connections_for_everything_else()
    {
        var connectionString = new NpgsqlConnectionStringBuilder(server.Settings["ConnectionStrings:IdentityServer"]) { MaxPoolSize = 4, Timeout = 3 };
        await using var factory = server.StartServer(new Dictionary<string, string?>
        {
            ["ConnectionStrings:IdentityServer"] = connectionString.ToString(),
        });
        var small = new AttachedServer(factory, DatabaseProvider.PostgreSql);
        var client = await small.CreateConfidentialClientAsync();
        var other = await small.CreateConfidentialClientAsync();
        var token = await TokenAsync(small, client);
        await OAuth.IntrospectAsync(small, client, token);

        var burst = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => OAuth.IntrospectAsync(small, client, token)));

        Assert.All(burst, json => Assert.True(json.GetProperty("active").GetBoolean(), json.ToString()));
        Assert.False(string.IsNullOrEmpty(await TokenAsync(small, other)));
    }

    private static async Task<string> TokenAsync(ServerFixture server, TestClient client)
    {
        var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!,
            tokenEndpoint: await server.EndpointAsync("token_endpoint"));
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {json}");
        return json.GetProperty("access_token").GetString()!;
    }

    /// <summary>
    /// On a server whose pool holds one connection: sets a session setting on it, gives it back to the pool, takes it
    /// again and reads the setting (empty after Npgsql's reset, which runs RESET ALL).
    /// </summary>
    private async Task<string> SessionSettingAfterReturnToPoolAsync(NpgsqlConnectionStringBuilder connectionString)
    {
        connectionString.MaxPoolSize = 1;
        await using var factory = server.StartServer(new Dictionary<string, string?>
        {
            ["ConnectionStrings:IdentityServer"] = connectionString.ToString(),
        });
        await using (var scope = factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            _ = await db.Database.SqlQuery<string>($"SELECT set_config('identityserver.test_marker', 'kept', false) AS \"Value\"").SingleAsync();
        }

        await using (var scope = factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            return await db.Database.SqlQuery<string>($"SELECT current_setting('identityserver.test_marker', true) AS \"Value\"").SingleAsync() ?? "";
        }
    }

    /// <summary>Runs one token lookup five times on one connection, then asks PostgreSQL how many statements that session has prepared.</summary>
    private static async Task<long> PreparedStatementsAfterRepeatedQueryAsync(IServiceProvider services)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        await db.Database.OpenConnectionAsync();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                var id = Guid.NewGuid().ToString();
                _ = await db.Set<OpenIddictEntityFrameworkCoreToken>().AnyAsync(token => token.Id == id);
            }

            return await db.Database.SqlQuery<long>($"SELECT count(*) AS \"Value\" FROM pg_prepared_statements").SingleAsync();
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }
}
