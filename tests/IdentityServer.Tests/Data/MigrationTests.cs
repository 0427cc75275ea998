using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Data;

/// <summary>
/// Each provider's migrations match the model and script cleanly. SQL Server cannot run on our machines, so its
/// migrations are checked this way (and by the script's key statements) rather than against a live server.
/// </summary>
public sealed class MigrationTests
{
    public static TheoryData<string> Providers => [nameof(SqliteApplicationDbContext), nameof(SqlServerApplicationDbContext), nameof(PostgreSqlApplicationDbContext)];

    [Theory]
    [MemberData(nameof(Providers))]
    public void Migrations_match_the_model(string context)
    {
        using var db = Create(context);
        Assert.NotEmpty(db.Database.GetMigrations());
        Assert.False(db.Database.HasPendingModelChanges(), $"{context}: the model has changes no migration covers; add a migration.");
    }

    /// <summary>Idempotent scripts are for the production providers; EF Core does not offer them for SQLite.</summary>
    [Theory]
    [InlineData(nameof(SqlServerApplicationDbContext))]
    [InlineData(nameof(PostgreSqlApplicationDbContext))]
    public void The_idempotent_migration_script_generates(string context)
    {
        using var db = Create(context);
        var script = db.GetService<IMigrator>().GenerateScript(options: MigrationsSqlGenerationOptions.Idempotent);
        Assert.Contains("__EFMigrationsHistory", script);
        Assert.Contains("OpenIddictTokens", script);
    }

    [Fact]
    public void The_SQL_Server_script_creates_every_table_the_server_needs()
    {
        using var db = Create(nameof(SqlServerApplicationDbContext));
        var script = db.GetService<IMigrator>().GenerateScript(options: MigrationsSqlGenerationOptions.Idempotent);
        string[] tables =
        [
            "OpenIddictApplications", "OpenIddictAuthorizations", "OpenIddictScopes", "OpenIddictTokens",
            "AspNetUsers", "AspNetRoles", "AspNetUserRoles", "DataProtectionKeys", "StoredKeys", "UserSessions",
            "UserSessionClients", "OutgoingEmails", "UsedClientAssertions", "UsedDpopProofs",
        ];
        foreach (var table in tables)
        {
            Assert.Contains($"CREATE TABLE [{table}]", script);
        }

        // Idempotent: every step is guarded by the history table, so the script can be run on any version.
        Assert.Contains("IF NOT EXISTS (\n    SELECT * FROM [__EFMigrationsHistory]", script.ReplaceLineEndings("\n"));
        Assert.Contains("CREATE UNIQUE INDEX [IX_OpenIddictApplications_ClientId]", script);
        Assert.Contains("CREATE UNIQUE INDEX [IX_StoredKeys_Use_Slot]", script);
        Assert.Contains("CONSTRAINT [FK_UserSessions_AspNetUsers_UserId] FOREIGN KEY ([UserId]) REFERENCES [AspNetUsers] ([Id]) ON DELETE CASCADE", script);
        Assert.Contains("CREATE INDEX [IX_UserSessionClients_NotifyAt]", script);
        Assert.Contains("CONSTRAINT [PK_UsedClientAssertions] PRIMARY KEY ([ClientId], [JtiHash])", script);
        Assert.Contains("CONSTRAINT [PK_UsedDpopProofs] PRIMARY KEY ([Thumbprint], [JtiHash])", script);
        // In the batch that adds its columns: only run through EXEC does SQL Server compile it after they exist.
        Assert.Contains("EXEC(N'UPDATE [UserSessionClients] SET [UserId] = (SELECT s.[UserId] FROM [UserSessions] s", script);
    }

    /// <summary>
    /// A client recorded for a live session before logout tokens were kept in the database carries over: it gets the
    /// session's user, so its logout token can still name them once the session (or the user) is gone.
    /// </summary>
    [SkippableTheory]
    [InlineData(DatabaseProvider.Sqlite)]
    [InlineData(DatabaseProvider.PostgreSql)]
    public async Task Upgrading_keeps_the_clients_recorded_for_live_sessions(DatabaseProvider provider)
    {
        Skip.If(provider == DatabaseProvider.PostgreSql && !PostgreSqlCluster.IsAvailable, PostgreSqlCluster.InstallHint);
        var connectionString = await TestDatabases.CreateAsync(provider);
        await using var db = Create(provider == DatabaseProvider.PostgreSql ? nameof(PostgreSqlApplicationDbContext) : nameof(SqliteApplicationDbContext));
        db.Database.SetConnectionString(connectionString);
        var migrator = db.GetService<IMigrator>();
        await migrator.MigrateAsync(db.Database.GetMigrations().Single(m => m.EndsWith("_BackChannelLogout", StringComparison.Ordinal)));
        var signedIn = new DateTime(2026, 11, 1, 8, 0, 0, DateTimeKind.Utc);
        await db.Database.ExecuteSqlAsync($"""
            INSERT INTO "AspNetUsers" ("Id", "AccessFailedCount", "EmailConfirmed", "LockoutEnabled", "PhoneNumberConfirmed", "TwoFactorEnabled")
            VALUES ('user-1', 0, FALSE, TRUE, FALSE, FALSE)
            """);
        await db.Database.ExecuteSqlAsync($"""
            INSERT INTO "UserSessions" ("Id", "UserId", "SignedInAt", "ExpiresAt", "LastSeenAt", "Methods")
            VALUES ('0123456789abcdef0123456789abcdef', 'user-1', {signedIn}, {signedIn.AddHours(10)}, {signedIn}, 'pwd')
            """);
        await db.Database.ExecuteSqlRawAsync("""
            INSERT INTO "UserSessionClients" ("SessionId", "ClientId", "Issuer") VALUES ('0123456789abcdef0123456789abcdef', 'rp', 'https://id.example.com/')
            """);

        await migrator.MigrateAsync();

        var row = Assert.Single(await db.Set<IdentityServer.Logout.UserSessionClient>().AsNoTracking().ToListAsync());
        Assert.Equal(("user-1", signedIn, null, 0), (row.UserId, row.RecordedAt, row.NotifyAt, row.Attempts));
    }

    /// <summary>
    /// The server keeps quiet about the one SQLite table rebuild that follows a data update (DurableLogoutTokens,
    /// checked above); a new migration that draws the same warnings must be reviewed and added here.
    /// </summary>
    [Fact]
    public async Task Only_the_reviewed_SQLite_rebuild_draws_migration_warnings()
    {
        var connectionString = await TestDatabases.CreateAsync(DatabaseProvider.Sqlite);
        var warnings = new List<(EventId Id, string Message)>();
        var options = new DbContextOptionsBuilder<SqliteApplicationDbContext>().UseSqlite(connectionString).UseOpenIddict()
            .UseApplicationServiceProvider(DesignTimeServices.Identity)
            .LogTo((_, level) => level >= LogLevel.Warning, data => warnings.Add((data.EventId, data.ToString())));
        await using var db = new SqliteApplicationDbContext(options.Options);

        await db.Database.MigrateAsync();

        Assert.Collection(warnings,
            rebuild =>
            {
                Assert.Equal(SqliteEventId.TableRebuildPendingWarning, rebuild.Id);
                Assert.Contains("table 'UserSessionClients'", rebuild.Message);
            },
            outsideTransaction =>
            {
                Assert.Equal(RelationalEventId.NonTransactionalMigrationOperationWarning, outsideTransaction.Id);
                Assert.Contains("from migration 'DurableLogoutTokens'", outsideTransaction.Message);
            });
    }

    private static ApplicationDbContext Create(string context) => context switch
    {
        nameof(SqliteApplicationDbContext) => new SqliteDesignTimeFactory().CreateDbContext([]),
        nameof(SqlServerApplicationDbContext) => new SqlServerDesignTimeFactory().CreateDbContext([]),
        nameof(PostgreSqlApplicationDbContext) => new PostgreSqlDesignTimeFactory().CreateDbContext([]),
        _ => throw new ArgumentOutOfRangeException(nameof(context)),
    };
}
