using System.Linq.Expressions;
using IdentityServer.Accounts;
using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Dpop;
using IdentityServer.Jobs;
using IdentityServer.Logout;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenIddict.Abstractions;
using Quartz;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Tests.Jobs;

public abstract class TokenPruningTests<TFixture> where TFixture : ServerFixture
{
    public const string Schedule = "0 15 3 * * ?";

    private readonly TFixture _server;

    protected TokenPruningTests(TFixture server) => _server = server;

    [SkippableFact]
    public async Task The_pruning_job_is_scheduled_with_the_configured_cron_expression()
    {
        var scheduler = await _server.Factory.Services.GetRequiredService<ISchedulerFactory>().GetScheduler();
        var triggers = await scheduler.GetTriggersOfJob(TokenPruningJob.Key);
        var trigger = Assert.IsAssignableFrom<ICronTrigger>(Assert.Single(triggers));
        Assert.Equal(Schedule, trigger.CronExpressionString);
    }

    [SkippableFact]
    public async Task Pruning_removes_exactly_the_unusable_entries_older_than_the_retention()
    {
        var entries = await ArrangeEntriesAsync();

        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<TokenPruner>().PruneAsync(CancellationToken.None);
        }

        await AssertOnlyExpectedRemainAsync(entries);
    }

    /// <summary>Pruning redeemed refresh tokens sooner than they could be presented weakens reuse detection: each run says so.</summary>
    [SkippableFact]
    public async Task A_retention_shorter_than_the_refresh_token_lifetime_is_warned_of_at_each_run()
    {
        Assert.Contains(JobEvents.RetentionShorterThanRefreshTokens.Id, await PruneAndListWarningsAsync("1.00:00:00"));
        Assert.DoesNotContain(JobEvents.RetentionShorterThanRefreshTokens.Id, await PruneAndListWarningsAsync("14.00:00:00"));

        async Task<IReadOnlyCollection<int>> PruneAndListWarningsAsync(string retention)
        {
            var warned = new WarningLog();
            await using var server = _server.StartServer(
                new Dictionary<string, string?> { ["TokenPruning:Retention"] = retention, ["Tokens:RefreshTokenLifetime"] = "14.00:00:00" },
                testServices: services => services.AddSingleton<ILoggerProvider>(warned));
            await using var scope = server.Services.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<TokenPruner>().PruneAsync(CancellationToken.None);
            return [.. warned.Entries.Select(e => e.EventId)];
        }
    }

    [SkippableFact]
    public async Task Concurrent_pruning_runs_from_two_instances_are_safe()
    {
        var entries = await ArrangeEntriesAsync();
        await using var second = _server.StartServer();

        await Task.WhenAll(PruneAsync(_server.Factory.Services), PruneAsync(second.Services));

        await AssertOnlyExpectedRemainAsync(entries);

        static async Task PruneAsync(IServiceProvider services)
        {
            await using var scope = services.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<TokenPruner>().PruneAsync(CancellationToken.None);
        }
    }

    [SkippableFact]
    /// <summary>
    /// What was recorded of an expired session's clients goes with it; a logout token waiting to be sent, a live
    /// session's clients, and a client recorded a moment ago for a session just ended (about to be made due) stay.
    /// </summary>
    public async Task Pruning_removes_the_rows_of_sessions_past_their_lifetime_and_keeps_the_others()
    {
        var user = await _server.CreateUserAsync();
        var now = DateTime.UtcNow;
        UserSession Row(TimeSpan expiresIn) => new()
        {
            Id = Guid.NewGuid().ToString("N"), UserId = user.Id, Methods = "pwd",
            SignedInAt = now.AddHours(-11), LastSeenAt = now.AddHours(-11), ExpiresAt = now + expiresIn,
        };
        var ended = Row(TimeSpan.FromMinutes(-1));
        var live = Row(TimeSpan.FromMinutes(5));
        UserSessionClient Client(string sessionId, string name, TimeSpan recordedAgo, DateTime? notifyAt = null) => new()
        {
            SessionId = sessionId, ClientId = name, UserId = user.Id, Issuer = "https://localhost/", RecordedAt = now - recordedAgo, NotifyAt = notifyAt,
        };
        var gone = Guid.NewGuid().ToString("N");
        var clients = new[]
        {
            Client(ended.Id, "of-the-expired-session", TimeSpan.FromHours(11)),
            Client(live.Id, "of-the-live-session", TimeSpan.FromHours(11)),
            Client(gone, "waiting-to-be-told", TimeSpan.FromHours(11), notifyAt: now.AddMinutes(1)),
            Client(Guid.NewGuid().ToString("N"), "recorded-just-now", TimeSpan.FromSeconds(1)),
        };
        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            db.AddRange(ended, live);
            db.AddRange(clients);
            await db.SaveChangesAsync();
        }

        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            var pruned = await scope.ServiceProvider.GetRequiredService<TokenPruner>().PruneAsync(CancellationToken.None);
            Assert.True(pruned.Sessions >= 1, $"Pruned {pruned.Sessions} sessions");
        }

        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            var remaining = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<UserSession>()
                .Where(s => s.UserId == user.Id).Select(s => s.Id).ToListAsync();
            Assert.Equal([live.Id], remaining);
            var remainingClients = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<UserSessionClient>()
                .Where(c => c.UserId == user.Id).Select(c => c.ClientId).ToListAsync();
            Assert.Equal(["of-the-live-session", "recorded-just-now", "waiting-to-be-told"], remainingClients.Order(StringComparer.Ordinal));
        }
    }

    /// <summary>A used client assertion is remembered until its expiry (its exp and a margin), then forgotten.</summary>
    [SkippableFact]
    public async Task Pruning_removes_the_client_assertion_records_past_their_expiry_and_keeps_the_others()
    {
        var clientId = Unique.Name("pkj");
        await AssertOnlyExpiredRecordsArePrunedAsync((name, expiresAt) => new UsedClientAssertion { ClientId = clientId, JtiHash = name, ExpiresAt = expiresAt },
            pruned => pruned.ClientAssertions, a => a.ClientId == clientId, a => a.JtiHash);
    }

    /// <summary>A passkey sign-in's challenge is remembered until that sign-in has expired anyway, then forgotten.</summary>
    [SkippableFact]
    public async Task Pruning_removes_the_passkey_challenge_records_past_their_expiry_and_keeps_the_others()
    {
        var prefix = Guid.NewGuid().ToString("N");
        await AssertOnlyExpiredRecordsArePrunedAsync((name, expiresAt) => new UsedPasskeyChallenge { ChallengeHash = prefix + name, ExpiresAt = expiresAt },
            pruned => pruned.PasskeyChallenges, c => c.ChallengeHash.StartsWith(prefix), c => c.ChallengeHash);
    }

    /// <summary>A used DPoP proof is remembered until it is too old to be accepted, then forgotten.</summary>
    [SkippableFact]
    public async Task Pruning_removes_the_DPoP_proof_records_past_their_expiry_and_keeps_the_others()
    {
        var thumbprint = Guid.NewGuid().ToString("N").PadRight(43, 'x');
        await AssertOnlyExpiredRecordsArePrunedAsync((name, expiresAt) => new UsedDpopProof { Thumbprint = thumbprint, JtiHash = name, ExpiresAt = expiresAt },
            pruned => pruned.DpopProofs, p => p.Thumbprint == thumbprint, p => p.JtiHash);
    }

    /// <summary>
    /// Stores three single-use records made by <paramref name="record"/> from a key (at most 32 characters) and an expiry:
    /// two expired, one live. A pruning run counts at least the two (<paramref name="counted"/>), and of this test's
    /// records (<paramref name="ofThisTest"/>) only the live one's key (<paramref name="keyOf"/>) is left.
    /// </summary>
    private async Task AssertOnlyExpiredRecordsArePrunedAsync<TRecord>(Func<string, DateTime, TRecord> record,
        Func<(long Tokens, long Authorizations, long Sessions, long ClientAssertions, long DpopProofs, long PasskeyChallenges), long> counted,
        Expression<Func<TRecord, bool>> ofThisTest, Expression<Func<TRecord, string>> keyOf) where TRecord : class
    {
        var now = DateTime.UtcNow;
        var live = record("live".PadRight(32, '0'), now + TimeSpan.FromMinutes(5));
        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            db.AddRange(record("expired".PadRight(32, '0'), now - TimeSpan.FromMinutes(1)), record("long-expired".PadRight(32, '0'), now - TimeSpan.FromDays(1)), live);
            await db.SaveChangesAsync();
        }

        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            var pruned = counted(await scope.ServiceProvider.GetRequiredService<TokenPruner>().PruneAsync(CancellationToken.None));
            Assert.True(pruned >= 2, $"Pruned {pruned} {typeof(TRecord).Name} records");
        }

        await using (var scope = _server.Factory.Services.CreateAsyncScope())
        {
            var remaining = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<TRecord>().Where(ofThisTest).Select(keyOf).ToListAsync();
            Assert.Equal([keyOf.Compile()(live)], remaining);
        }
    }

    private sealed record Entry(string Id, bool IsToken, bool ShouldRemain, string Description);

    /// <summary>Tokens and authorizations in every state, old (30 days, past the 14-day retention) and recent (1 day).</summary>
    private async Task<List<Entry>> ArrangeEntriesAsync()
    {
        var client = await _server.CreateConfidentialClientAsync();
        var user = await _server.CreateUserAsync();
        await using var scope = _server.Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var authorizations = scope.ServiceProvider.GetRequiredService<IOpenIddictAuthorizationManager>();
        var tokens = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        var applicationId = await applications.GetIdAsync((await applications.FindByClientIdAsync(client.ClientId))!);
        var now = DateTimeOffset.UtcNow;
        var old = now.AddDays(-30);
        var recent = now.AddDays(-1);
        var entries = new List<Entry>();

        async Task<string> Authorization(DateTimeOffset created, string status, string type, bool remains, string description)
        {
            var authorization = await authorizations.CreateAsync(new OpenIddictAuthorizationDescriptor
            {
                ApplicationId = applicationId,
                Subject = user.Id,
                CreationDate = created,
                Status = status,
                Type = type,
            });
            var id = (await authorizations.GetIdAsync(authorization))!;
            entries.Add(new Entry(id, false, remains, description));
            return id;
        }

        async Task Token(DateTimeOffset created, DateTimeOffset expires, string status, bool remains, string description, string? authorizationId = null)
        {
            var token = await tokens.CreateAsync(new OpenIddictTokenDescriptor
            {
                ApplicationId = applicationId,
                AuthorizationId = authorizationId,
                Subject = user.Id,
                CreationDate = created,
                ExpirationDate = expires,
                Status = status,
                Type = TokenTypeIdentifiers.RefreshToken,
            });
            entries.Add(new Entry((await tokens.GetIdAsync(token))!, true, remains, description));
        }

        await Token(old, now.AddDays(1), Statuses.Valid, remains: true, "old but still valid token");
        await Token(old, old.AddHours(1), Statuses.Valid, remains: false, "old expired token");
        await Token(old, now.AddDays(1), Statuses.Redeemed, remains: false, "old redeemed token");
        await Token(old, now.AddDays(1), Statuses.Revoked, remains: false, "old revoked token");
        await Token(old, now.AddDays(1), Statuses.Rejected, remains: false, "old rejected (invalid) token");
        // Inactive entries are tokens still being created; OpenIddict leaves them until they expire.
        await Token(old, now.AddDays(1), Statuses.Inactive, remains: true, "old inactive, unexpired token");
        await Token(old, old.AddHours(1), Statuses.Inactive, remains: false, "old inactive, expired token");
        await Token(recent, recent.AddHours(1), Statuses.Valid, remains: true, "recent expired token");
        await Token(recent, now.AddDays(1), Statuses.Redeemed, remains: true, "recent redeemed token");
        await Token(recent, now.AddDays(1), Statuses.Revoked, remains: true, "recent revoked token");

        await Authorization(old, Statuses.Valid, AuthorizationTypes.Permanent, remains: true, "old permanent consent");
        await Authorization(old, Statuses.Revoked, AuthorizationTypes.Permanent, remains: false, "old revoked authorization");
        await Authorization(old, Statuses.Valid, AuthorizationTypes.AdHoc, remains: false, "old ad-hoc authorization without tokens");
        var withToken = await Authorization(old, Statuses.Valid, AuthorizationTypes.AdHoc, remains: true, "old ad-hoc authorization with a valid token");
        await Token(old, now.AddDays(1), Statuses.Valid, remains: true, "valid token of an ad-hoc authorization", withToken);
        await Authorization(recent, Statuses.Revoked, AuthorizationTypes.Permanent, remains: true, "recent revoked authorization");
        return entries;
    }

    private async Task AssertOnlyExpectedRemainAsync(List<Entry> entries)
    {
        await using var scope = _server.Factory.Services.CreateAsyncScope();
        var authorizations = scope.ServiceProvider.GetRequiredService<IOpenIddictAuthorizationManager>();
        var tokens = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        var wrong = new List<string>();
        foreach (var entry in entries)
        {
            var exists = entry.IsToken ? await tokens.FindByIdAsync(entry.Id) is not null : await authorizations.FindByIdAsync(entry.Id) is not null;
            if (exists != entry.ShouldRemain)
            {
                wrong.Add($"{entry.Description}: expected {(entry.ShouldRemain ? "kept" : "removed")}");
            }
        }

        Assert.Empty(wrong);
    }
}

public sealed class SqlitePruningFixture : SqliteServerFixture
{
    public SqlitePruningFixture() => Settings["TokenPruning:Schedule"] = TokenPruningTests<SqlitePruningFixture>.Schedule;
}

public sealed class PostgreSqlPruningFixture : PostgreSqlServerFixture
{
    public PostgreSqlPruningFixture() => Settings["TokenPruning:Schedule"] = TokenPruningTests<PostgreSqlPruningFixture>.Schedule;
}

public sealed class SqliteTokenPruningTests(SqlitePruningFixture server) : TokenPruningTests<SqlitePruningFixture>(server), IClassFixture<SqlitePruningFixture>;

public sealed class PostgreSqlTokenPruningTests(PostgreSqlPruningFixture server) : TokenPruningTests<PostgreSqlPruningFixture>(server), IClassFixture<PostgreSqlPruningFixture>;
