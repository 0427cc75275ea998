using IdentityServer.Data;
using IdentityServer.Performance;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Tests.Performance;

/// <summary>
/// On SQLite and PostgreSQL the token lookups bypass EF Core's query pipeline (prepared statements on connections of
/// their own); what they hand OpenIddict must be what EF Core would have read: the entry with its foreign keys (left
/// detached until it is written), its authorization tracked as a tracking query leaves it, so that updates keep every
/// column.
/// </summary>
public abstract class PreparedTokenReaderTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    protected TFixture Server => server;

    /// <summary>A user's signed-in client: its code, access and refresh token entries (with their authorization), plus a client credentials token.</summary>
    protected async Task<string[]> IssueTokensAsync()
    {
        var client = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var machine = await server.CreateConfidentialClientAsync();
        await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), machine.ClientId, machine.ClientSecret!, tokenEndpoint: await server.EndpointAsync("token_endpoint"));

        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var ids = await db.Set<OpenIddictEntityFrameworkCoreToken>().Where(t => t.Subject == user.Id || t.Subject == machine.ClientId)
            .Select(t => t.Id!).ToArrayAsync();
        Assert.Equal(4, ids.Length);
        return ids;
    }

    [SkippableFact]
    public async Task An_entry_read_by_id_or_reference_id_is_what_EF_Core_reads_and_its_authorization_is_tracked_unchanged()
    {
        foreach (var id in await IssueTokensAsync())
        {
            var expected = await ReadWithEfCoreAsync(id);
            await using var scope = server.Factory.Services.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            var reader = scope.ServiceProvider.GetRequiredService<PreparedTokenReader>();
            Assert.True(reader.Supports(db));

            var read = await reader.FindAsync(db, PreparedTokenReader.Key.Id, id, CancellationToken.None);

            Assert.NotNull(read);
            Assert.False(read.Tracked);
            Assert.Equal(expected, Describe(db, read));
            Assert.Equal(EntityState.Detached, db.Entry(read.Entity).State);
            if (read.Entity.Authorization is { } authorization)
            {
                Assert.Equal(EntityState.Unchanged, db.Entry(authorization).State);
            }

            if (expected.ReferenceId is { } referenceId)
            {
                await using var other = server.Factory.Services.CreateAsyncScope();
                var otherDb = other.ServiceProvider.GetRequiredService<ApplicationDbContext>();
                Assert.Equal(expected, Describe(otherDb, (await reader.FindAsync(otherDb, PreparedTokenReader.Key.ReferenceId, referenceId, CancellationToken.None))!));
            }
        }
    }

    [SkippableFact]
    public async Task An_unknown_id_reads_as_null()
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();

        Assert.Null(await scope.ServiceProvider.GetRequiredService<PreparedTokenReader>().FindAsync(db, PreparedTokenReader.Key.Id, Guid.NewGuid().ToString(), CancellationToken.None));
    }

    /// <summary>The stock update writes every column: an entry read by the reader must keep its client and authorization when revoked.</summary>
    [SkippableFact]
    public async Task An_entry_read_by_the_reader_and_revoked_keeps_its_client_and_authorization()
    {
        foreach (var id in await IssueTokensAsync())
        {
            var before = await ReadWithEfCoreAsync(id);
            await using (var scope = server.Factory.Services.CreateAsyncScope())
            {
                var tokens = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
                Assert.True(await tokens.TryRevokeAsync((await tokens.FindByIdAsync(id))!));
            }

            var after = await ReadWithEfCoreAsync(id);
            Assert.Equal(OpenIddictConstants.Statuses.Revoked, after.Status);
            Assert.Equal(before with { Status = after.Status, ConcurrencyToken = after.ConcurrencyToken }, after);
        }
    }

    [SkippableFact]
    public async Task An_authorization_the_context_already_tracks_is_the_one_the_entry_points_to()
    {
        var stored = await Task.WhenAll((await IssueTokensAsync()).Select(ReadWithEfCoreAsync));
        var withAuthorization = stored.First(t => t.AuthorizationId is not null);
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var tracked = await db.Set<OpenIddictEntityFrameworkCoreAuthorization>().AsTracking().SingleAsync(a => a.Id == withAuthorization.AuthorizationId);

        var read = await scope.ServiceProvider.GetRequiredService<PreparedTokenReader>().FindAsync(db, PreparedTokenReader.Key.Id, withAuthorization.Id!, CancellationToken.None);

        Assert.Same(tracked, read!.Entity.Authorization);
    }

    [SkippableFact]
    public async Task An_entry_the_context_already_tracks_is_the_one_handed_back()
    {
        var id = (await IssueTokensAsync())[0];
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var tracked = await db.Set<OpenIddictEntityFrameworkCoreToken>().AsTracking().SingleAsync(t => t.Id == id);

        var read = await scope.ServiceProvider.GetRequiredService<PreparedTokenReader>().FindAsync(db, PreparedTokenReader.Key.Id, id, CancellationToken.None);

        Assert.True(read!.Tracked);
        Assert.Same(tracked, read.Entity);
    }

    protected async Task<StoredToken> ReadWithEfCoreAsync(string id)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var token = await db.Set<OpenIddictEntityFrameworkCoreToken>().AsTracking().Include(t => t.Authorization).SingleAsync(t => t.Id == id);
        var entry = db.Entry(token);
        return Describe(db, new PreparedTokenReader.ReadToken(token, entry.Property<string?>("ApplicationId").CurrentValue,
            entry.Property<string?>("AuthorizationId").CurrentValue, Tracked: true));
    }

    protected static StoredToken Describe(DbContext db, PreparedTokenReader.ReadToken read)
    {
        var token = read.Entity;
        var authorization = token.Authorization is { } a ? db.Entry(a) : null;
        return new StoredToken(token.Id, read.ApplicationId, read.AuthorizationId,
            token.ConcurrencyToken, token.CreationDate, token.CreationDate?.Kind, token.ExpirationDate, token.Payload, token.Properties,
            token.RedemptionDate, token.ReferenceId, token.Status, token.Subject, token.Type,
            authorization is null ? null : string.Join("|", authorization.Entity.Id, authorization.Property<string?>("ApplicationId").CurrentValue,
                authorization.Entity.ConcurrencyToken, authorization.Entity.CreationDate?.ToString("O"), authorization.Entity.Properties,
                authorization.Entity.Scopes, authorization.Entity.Status, authorization.Entity.Subject, authorization.Entity.Type));
    }

    protected sealed record StoredToken(string? Id, string? ApplicationId, string? AuthorizationId, string? ConcurrencyToken, DateTime? CreationDate,
        DateTimeKind? CreationDateKind, DateTime? ExpirationDate, string? Payload, string? Properties, DateTime? RedemptionDate, string? ReferenceId,
        string? Status, string? Subject, string? Type, string? Authorization);
}

public sealed class SqlitePreparedTokenReaderTests(SqliteServerFixture server) : PreparedTokenReaderTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

/// <summary>
/// On PostgreSQL, lookups waiting at the same moment go to the database as one statement (<c>= ANY(@value)</c>). These
/// tests make them wait together: a transaction holding the token table's exclusive lock blocks the lookups already
/// sent, while the rest queue behind them.
/// </summary>
public sealed class PostgreSqlPreparedTokenReaderTests(PostgreSqlServerFixture server) : PreparedTokenReaderTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>
{
    private const string GroupedStatement = "= ANY(";

    /// <summary>Not a timing assertion: a lookup left waiting forever fails the test instead of hanging the run.</summary>
    private static readonly TimeSpan Hang = TimeSpan.FromSeconds(30);

    [SkippableFact]
    public async Task Lookups_waiting_together_each_get_their_own_entry_or_null()
    {
        var expected = await Task.WhenAll((await IssueTokensAsync()).Select(ReadWithEfCoreAsync));
        // Each entry twice by id, those with a reference id once by it, and an unknown id and reference id.
        Lookup[] lookups =
        [
            .. expected.SelectMany(token => new[] { new Lookup(PreparedTokenReader.Key.Id, token.Id!, token), new Lookup(PreparedTokenReader.Key.Id, token.Id!, token) }),
            .. expected.Where(token => token.ReferenceId is not null).Select(token => new Lookup(PreparedTokenReader.Key.ReferenceId, token.ReferenceId!, token)),
            new(PreparedTokenReader.Key.Id, Guid.NewGuid().ToString(), null),
            new(PreparedTokenReader.Key.ReferenceId, Guid.NewGuid().ToString(), null),
        ];
        await using var inFlight = await LookUpWhileLockedAsync(lookups, whileLocked: _ => Task.CompletedTask);

        var read = await Task.WhenAll(inFlight.Reads).WaitAsync(Hang);
        for (var i = 0; i < lookups.Length; i++)
        {
            Assert.Equal(lookups[i].Expected, read[i] is null ? null : Describe(inFlight.Db(i), read[i]!));
        }

        // The same entry looked up twice at once: each request gets an instance of its own.
        Assert.NotSame(read[0]!.Entity, read[1]!.Entity);
    }

    [SkippableFact]
    public async Task Lookups_whose_connection_is_lost_are_answered_and_the_next_lookups_find_their_entry()
    {
        var ids = await IssueTokensAsync();
        await using var inFlight = await LookUpWhileLockedAsync([.. ids.Select(id => new Lookup(PreparedTokenReader.Key.Id, id, null))],
            whileLocked: table => table.TerminateBlockedLookupsAsync());

        // Each lookup is read again on a new connection or fails with the database's error; none is left waiting or told
        // its entry does not exist.
        var outcomes = await Task.WhenAll(inFlight.Reads.Select(async read =>
        {
            try
            {
                return await read.WaitAsync(Hang) is null ? "not found" : "found";
            }
            catch (Npgsql.NpgsqlException)
            {
                return "failed";
            }
        }));
        Assert.DoesNotContain("not found", outcomes);

        await using var after = Server.Factory.Services.CreateAsyncScope();
        Assert.NotNull(await Reader(after).FindAsync(Db(after), PreparedTokenReader.Key.Id, ids[0], CancellationToken.None));
    }

    /// <summary>A restart or failover closes the connections the reader keeps open: a lookup must not fail for it.</summary>
    [SkippableFact]
    public async Task A_lookup_whose_kept_connection_is_lost_is_read_again_on_a_new_one()
    {
        var ids = await IssueTokensAsync();
        await using var scope = Server.Factory.Services.CreateAsyncScope();

        // One lookup first, so the reader keeps its connection open for the next.
        Assert.NotNull(await Reader(scope).FindAsync(Db(scope), PreparedTokenReader.Key.Id, ids[0], CancellationToken.None));
        Task<PreparedTokenReader.ReadToken?> read;
        await using (var table = await LockTokenTableAsync())
        {
            read = Reader(scope).FindAsync(Db(scope), PreparedTokenReader.Key.Id, ids[1], CancellationToken.None);
            var kept = await table.WaitForBlockedLookupAsync();
            await table.TerminateBlockedLookupsAsync();

            // Without the second attempt the lookup fails here and nothing waits on the lock again.
            await table.WaitForBlockedLookupAsync(except: kept);
        }

        Assert.NotNull(await read.WaitAsync(Hang));
    }

    [SkippableFact]
    public async Task A_lookup_whose_request_is_aborted_stops_waiting_and_the_others_find_their_entry()
    {
        var id = (await IssueTokensAsync())[0];
        await using var scope = Server.Factory.Services.CreateAsyncScope();
        using var aborted = new CancellationTokenSource();
        Task<PreparedTokenReader.ReadToken?> abandoned, waiting;
        await using (var table = await LockTokenTableAsync())
        {
            waiting = Reader(scope).FindAsync(Db(scope), PreparedTokenReader.Key.Id, id, CancellationToken.None);
            abandoned = Reader(scope).FindAsync(Db(scope), PreparedTokenReader.Key.Id, id, aborted.Token);
            await table.WaitForBlockedLookupAsync();
            await aborted.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned.WaitAsync(Hang));
        }

        Assert.NotNull(await waiting.WaitAsync(Hang));
    }

    /// <summary>
    /// PostgreSQL keeps a prepared statement's generic plan: one made while the token table was small (a sequential
    /// scan) would read every row of the table the server grows to before statistics catch up.
    /// </summary>
    [SkippableFact]
    public async Task Grouped_lookups_probe_the_indexes_whatever_the_statistics_knew_when_they_were_planned()
    {
        await IssueTokensAsync();
        await using var scope = Server.Factory.Services.CreateAsyncScope();
        await using var session = await PostgreSqlSession.OpenAsync(Server);
        foreach (var key in new[] { PreparedTokenReader.Key.Id, PreparedTokenReader.Key.ReferenceId })
        {
            var (commandText, lookup) = Reader(scope).StatementOf(Db(scope), key);
            var name = $"lookup_{key}".ToLowerInvariant();

            // As the reader runs it, with whatever it runs around the query (its planner settings).
            string AsTheReaderRunsIt(string statement) => commandText.Replace(lookup, statement, StringComparison.Ordinal);
            await session.ExecuteAsync("ANALYZE \"OpenIddictTokens\"; ANALYZE \"OpenIddictAuthorizations\"");
            await session.ExecuteAsync($"PREPARE {name}(text[]) AS {lookup.Replace("@value", "$1", StringComparison.Ordinal)}");
            for (var i = 0; i < 6; i++)
            {
                // After five runs PostgreSQL settles on the generic plan.
                await session.ExecuteAsync(AsTheReaderRunsIt($"EXECUTE {name}(ARRAY['none'])"));
            }

            var grown = Unique.Name("unplanned");
            try
            {
                await session.ExecuteAsync($"INSERT INTO \"OpenIddictTokens\" (\"Id\", \"ReferenceId\", \"Type\", \"Status\") " +
                    $"SELECT '{grown}-' || g, '{grown}-' || g, 'access_token', 'valid' FROM generate_series(1, 20000) AS g");

                var plan = new List<string>();
                await using (var explain = new Npgsql.NpgsqlCommand(AsTheReaderRunsIt($"EXPLAIN EXECUTE {name}(ARRAY['none'])"), session.Connection))
                await using (var rows = await explain.ExecuteReaderAsync())
                {
                    // Past the settings' result, to the plan's.
                    await rows.NextResultAsync();
                    while (await rows.ReadAsync())
                    {
                        plan.Add(rows.GetString(0));
                    }
                }

                Assert.DoesNotContain(plan, line => line.Contains("Seq Scan", StringComparison.Ordinal));
                Assert.Contains(plan, line => line.Contains("Index", StringComparison.Ordinal));
            }
            finally
            {
                await session.ExecuteAsync($"DELETE FROM \"OpenIddictTokens\" WHERE \"Id\" LIKE '{grown}-%'; DEALLOCATE {name}");
            }
        }
    }

    private sealed record Lookup(PreparedTokenReader.Key Key, string Value, StoredToken? Expected);

    /// <summary>
    /// Starts each lookup, in a request scope of its own, while the token table is locked; once one waits on the lock
    /// (the rest queued behind it), does <paramref name="whileLocked"/>, then lets go of the lock.
    /// </summary>
    private async Task<LookupsInFlight> LookUpWhileLockedAsync(IReadOnlyList<Lookup> lookups, Func<TokenTableLock, Task> whileLocked)
    {
        var scopes = lookups.Select(_ => Server.Factory.Services.CreateAsyncScope()).ToArray();
        await using var table = await LockTokenTableAsync();
        var reads = lookups.Select((lookup, i) => Reader(scopes[i]).FindAsync(Db(scopes[i]), lookup.Key, lookup.Value, CancellationToken.None)).ToArray();
        await table.WaitForBlockedLookupAsync();
        await whileLocked(table);
        return new LookupsInFlight(scopes, reads);
    }

    private sealed class LookupsInFlight(AsyncServiceScope[] scopes, Task<PreparedTokenReader.ReadToken?>[] reads) : IAsyncDisposable
    {
        public Task<PreparedTokenReader.ReadToken?>[] Reads { get; } = reads;

        public ApplicationDbContext Db(int lookup) => PostgreSqlPreparedTokenReaderTests.Db(scopes[lookup]);

        public async ValueTask DisposeAsync()
        {
            foreach (var scope in scopes)
            {
                await scope.DisposeAsync();
            }
        }
    }

    private static PreparedTokenReader Reader(AsyncServiceScope scope) => scope.ServiceProvider.GetRequiredService<PreparedTokenReader>();

    private static ApplicationDbContext Db(AsyncServiceScope scope) => scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();

    private async Task<TokenTableLock> LockTokenTableAsync()
    {
        var session = await PostgreSqlSession.OpenAsync(Server);
        await session.BeginAsync();
        await session.ExecuteAsync("LOCK TABLE \"OpenIddictTokens\" IN ACCESS EXCLUSIVE MODE");
        return new TokenTableLock(session);
    }

    /// <summary>The token table locked until disposed; the lock's own connection looks at the lookups it blocks.</summary>
    private sealed class TokenTableLock(PostgreSqlSession session) : IAsyncDisposable
    {
        private const string BlockedLookups =
            $"FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%{GroupedStatement}%'";

        /// <summary>Until a grouped lookup waits on the lock (so the rest are queued behind it); the waiting connections' process ids.</summary>
        public async Task<int[]> WaitForBlockedLookupAsync(int[]? except = null)
        {
            var blocked = Array.Empty<int>();
            await Eventually.TrueAsync(async () =>
            {
                blocked = [.. (await ScalarAsync($"SELECT array_agg(pid) {BlockedLookups}") as int[] ?? []).Except(except ?? [])];
                return blocked.Length > 0;
            }, TimeSpan.FromSeconds(30), "a grouped lookup blocked by the lock");
            return blocked;
        }

        public Task TerminateBlockedLookupsAsync() => ScalarAsync($"SELECT count(pg_terminate_backend(pid)) {BlockedLookups}");

        private async Task<object?> ScalarAsync(string sql)
        {
            // Within a transaction PostgreSQL answers pg_stat_activity from a snapshot taken at its first use: a new one each time.
            await session.ExecuteAsync("SELECT pg_stat_clear_snapshot()");
            return await session.ScalarAsync<object?>(sql);
        }

        public async ValueTask DisposeAsync()
        {
            await session.CommitAsync();
            await session.DisposeAsync();
        }
    }
}
