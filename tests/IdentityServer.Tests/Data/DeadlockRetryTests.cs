using System.Net;
using IdentityServer.Data;
using IdentityServer.Jobs;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Data;

/// <summary>
/// A server whose connections wait 5 s, not PostgreSQL's default 1 s, before they look for a deadlock: PostgreSQL looks
/// once per wait, so a test that sees the server waiting has that long to close the lock cycle, even on a busy machine.
/// </summary>
public sealed class PostgreSqlSlowDeadlockCheckFixture : PostgreSqlServerFixture
{
    public PostgreSqlSlowDeadlockCheckFixture()
    {
        AccountSettings.Apply(this);
        Settings["TokenPruning:Enabled"] = "false"; // the pruning test runs it itself; a scheduled run must not meet it
    }

    protected override async Task<string> CreateDatabaseAsync() => $"{await base.CreateDatabaseAsync()};Options=-c deadlock_timeout=5s";
}

/// <summary>
/// Revoking or deleting many token entries at once can deadlock with token writes in flight (PostgreSQL, SQL Server):
/// the database aborts one side. When that is the revocation, it is run again, not answered with an error. Each test
/// makes the deadlock on purpose: a connection of its own takes row locks the way a batch of token writes would, waits
/// until the server's side waits for it, then closes the cycle; its own transaction waits minutes before it looks for
/// a deadlock, so the server's side is the one aborted.
/// </summary>
public sealed class PostgreSqlDeadlockRetryTests(PostgreSqlSlowDeadlockCheckFixture server) : IClassFixture<PostgreSqlSlowDeadlockCheckFixture>
{
    /// <summary>Deleting a user revokes their authorizations, then their tokens; the writer holds the tokens, then wants the authorizations.</summary>
    [SkippableFact]
    public async Task A_user_deletion_the_database_aborts_to_break_a_deadlock_is_run_again()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync("openid offline_access");
        await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var read = await admin.GetAsync(Path(UsersUrl, user.Id));
        await using var monitor = await PostgreSqlSession.OpenAsync(server);
        Assert.True(await monitor.ScalarAsync<long>("SELECT count(*) FROM \"OpenIddictAuthorizations\" WHERE \"Subject\" = @value", user.Id) > 0);

        var deletion = await InDeadlockAsync(() => admin.DeleteAsync(Path(UsersUrl, user.Id), ETagOf(read)), user.Id,
            holdFirst: "SELECT 1 FROM \"OpenIddictTokens\" WHERE \"Subject\" = @value FOR UPDATE",
            thenWant: "SELECT 1 FROM \"OpenIddictAuthorizations\" WHERE \"Subject\" = @value FOR UPDATE",
            waiting: "the deletion waiting for the user's tokens");

        Assert.Equal(HttpStatusCode.NoContent, deletion.StatusCode);
        await (await admin.GetAsync(Path(UsersUrl, user.Id))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        Assert.Single((await AuditForAsync(admin, "user", user.Id)).EnumerateArray(), e => e.GetProperty("action").GetString() == "user.deleted");
        Assert.Equal(0L, await monitor.ScalarAsync<long>(
            "SELECT count(*) FROM \"OpenIddictTokens\" WHERE \"Subject\" = @value AND \"Status\" <> 'revoked'", user.Id));
    }

    /// <summary>
    /// Deleting a client locks the client's row, then deletes its token entries, then the client; the writer holds one
    /// of the client's entries (as a redemption's update does), then wants the client's row (as a new entry's foreign
    /// key check does).
    /// </summary>
    [SkippableFact]
    public async Task A_client_deletion_the_database_aborts_to_break_a_deadlock_is_run_again()
    {
        const string TheClient = "FROM \"OpenIddictApplications\" WHERE \"ClientId\" = @value";
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        await TokenAsync(server, client.ClientId, client.ClientSecret!, scope);

        var deletion = await InDeadlockAsync(() => admin.DeleteAsync(Path(ClientsUrl, client.ClientId)), client.ClientId,
            holdFirst: $"SELECT 1 FROM \"OpenIddictTokens\" WHERE \"ApplicationId\" = (SELECT \"Id\" {TheClient}) FOR UPDATE",
            thenWant: $"SELECT 1 {TheClient} FOR KEY SHARE",
            waiting: "the deletion, the client's row locked, waiting for its entries");

        Assert.Equal(HttpStatusCode.NoContent, deletion.StatusCode);
        await (await admin.GetAsync(Path(ClientsUrl, client.ClientId))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        Assert.Single((await AuditForAsync(admin, "client", client.ClientId)).EnumerateArray(), e => e.GetProperty("action").GetString() == "client.deleted");
        Assert.Equal(HttpStatusCode.Unauthorized, (await ClientCredentialsAsync(server, client.ClientId, client.ClientSecret!, scope)).StatusCode);
    }

    /// <summary>
    /// Signing out everywhere revokes the user's token entries with one statement, which locks them one after the other
    /// in the table's order; the writer holds the last of them, then wants the others.
    /// </summary>
    [SkippableFact]
    public async Task A_sign_out_everywhere_the_database_aborts_to_break_a_deadlock_is_run_again()
    {
        const string UsersLiveEntries = "FROM \"OpenIddictTokens\" WHERE \"Subject\" = @value AND \"Status\" <> 'revoked'";
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var signOutPage = await AccountPages.OpenAsync(browser, "/account/sessions");
        await using var monitor = await PostgreSqlSession.OpenAsync(server);
        Assert.True(await monitor.ScalarAsync<long>($"SELECT count(*) {UsersLiveEntries}", user.Id) > 1);

        var signOut = await InDeadlockAsync(() => browser.SubmitAsync(signOutPage, selector: "#sign-out-everywhere"), user.Id,
            holdFirst: $"SELECT 1 {UsersLiveEntries} ORDER BY ctid DESC LIMIT 1 FOR UPDATE",
            thenWant: $"SELECT 1 {UsersLiveEntries} ORDER BY ctid FOR UPDATE",
            waiting: "the revocation waiting for the last entry");

        Assert.Contains("Every session of your account has been signed out", signOut.Body);
        Assert.Equal(0L, await monitor.ScalarAsync<long>($"SELECT count(*) {UsersLiveEntries}", user.Id));
        var refresh = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refresh)).GetProperty("error").GetString());
    }

    /// <summary>
    /// Pruning deletes unusable entries in batches, each with one statement, which (on a table this small) locks them
    /// one after the other in the table's order; the writer holds the last of them, then wants the others. OpenIddict
    /// goes on with the next batches and then fails the whole call; it is run again, and the authorizations are pruned
    /// after it as usual.
    /// </summary>
    [SkippableFact]
    public async Task A_pruning_run_the_database_aborts_to_break_a_deadlock_is_run_again()
    {
        const string Prunable = "FROM \"OpenIddictTokens\" WHERE \"Id\" = ANY(@value)";
        var old = DateTime.UtcNow.AddDays(-30);
        var prefix = Unique.Name("prunable");
        var ids = Enumerable.Range(1, 3).Select(i => $"{prefix}-{i}").ToList(); // in the table's order too, whichever a plan follows
        var authorization = Unique.Name("prunable-authorization");
        await using var monitor = await PostgreSqlSession.OpenAsync(server);
        foreach (var id in ids)
        {
            await monitor.ExecuteAsync("INSERT INTO \"OpenIddictTokens\" (\"Id\", \"CreationDate\", \"Status\", \"Type\") " +
                $"VALUES ('{id}', @value, 'revoked', 'refresh_token')", old);
        }

        await monitor.ExecuteAsync("INSERT INTO \"OpenIddictAuthorizations\" (\"Id\", \"CreationDate\", \"Status\", \"Type\") " +
            $"VALUES ('{authorization}', @value, 'revoked', 'ad-hoc')", old);

        await InDeadlockAsync(PruneAsync, ids.ToArray(),
            holdFirst: $"SELECT 1 {Prunable} ORDER BY ctid DESC LIMIT 1 FOR UPDATE",
            thenWant: $"SELECT 1 {Prunable} ORDER BY ctid FOR UPDATE",
            waiting: "the pruning waiting for the last entry");

        Assert.Equal(0L, await monitor.ScalarAsync<long>($"SELECT count(*) {Prunable}", ids.ToArray()));
        Assert.Equal(0L, await monitor.ScalarAsync<long>("SELECT count(*) FROM \"OpenIddictAuthorizations\" WHERE \"Id\" = @value", authorization));

        async Task<(long, long, long, long, long, long)> PruneAsync()
        {
            await using var scope = server.Factory.Services.CreateAsyncScope();
            return await scope.ServiceProvider.GetRequiredService<TokenPruner>().PruneAsync(CancellationToken.None);
        }
    }

    /// <summary>
    /// Runs <paramref name="operation"/> into a deadlock on purpose: a writer of the test's own holds the rows of
    /// <paramref name="holdFirst"/>, waits until the operation waits for it, then asks for <paramref name="thenWant"/>,
    /// rows the operation holds by then. That closes the cycle, and returns once the operation's side is aborted (the
    /// writer looks for a deadlock only after minutes); the writer then commits, letting the operation's next attempt
    /// through. Returns the operation's result once PostgreSQL has counted the deadlock.
    /// </summary>
    private async Task<T> InDeadlockAsync<T>(Func<Task<T>> operation, object value, string holdFirst, string thenWant, string waiting)
    {
        await using var monitor = await PostgreSqlSession.OpenAsync(server);
        var deadlocksBefore = await monitor.DeadlocksAsync();
        await using var writer = await PostgreSqlSession.OpenAsync(server);
        await writer.BeginAsync();
        await writer.ExecuteAsync(holdFirst, value);

        var running = operation();
        await monitor.WaitUntilBlockedByAsync(writer, waiting);
        await writer.ExecuteAsync(thenWant, value);
        await writer.CommitAsync();

        var result = await running;
        await monitor.WaitUntilDeadlockAfterAsync(deadlocksBefore);
        return result;
    }
}

/// <summary>
/// OpenIddict's pruning gathers the failures of its batches into one <see cref="AggregateException"/>: a deadlock
/// among them, whichever it is, is seen as one.
/// </summary>
public sealed class DatabaseErrorsTests
{
    [Fact]
    public void A_deadlock_among_the_failures_of_an_aggregate_is_a_deadlock()
    {
        var deadlock = new InvalidOperationException("A transient failure", new PostgresException("deadlock detected", "ERROR", "ERROR", "40P01"));

        Assert.True(DatabaseErrors.IsDeadlock(new AggregateException(new TimeoutException(), deadlock)));
        Assert.False(DatabaseErrors.IsDeadlock(new AggregateException(new TimeoutException(), new InvalidOperationException("other"))));
    }
}
