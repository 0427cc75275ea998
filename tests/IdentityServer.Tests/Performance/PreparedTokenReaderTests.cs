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
    /// <summary>A user's signed-in client: its code, access and refresh token entries (with their authorization), plus a client credentials token.</summary>
    private async Task<string[]> IssueTokensAsync()
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

    private async Task<StoredToken> ReadWithEfCoreAsync(string id)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var token = await db.Set<OpenIddictEntityFrameworkCoreToken>().AsTracking().Include(t => t.Authorization).SingleAsync(t => t.Id == id);
        var entry = db.Entry(token);
        return Describe(db, new PreparedTokenReader.ReadToken(token, entry.Property<string?>("ApplicationId").CurrentValue,
            entry.Property<string?>("AuthorizationId").CurrentValue, Tracked: true));
    }

    private static StoredToken Describe(DbContext db, PreparedTokenReader.ReadToken read)
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

    private sealed record StoredToken(string? Id, string? ApplicationId, string? AuthorizationId, string? ConcurrencyToken, DateTime? CreationDate,
        DateTimeKind? CreationDateKind, DateTime? ExpirationDate, string? Payload, string? Properties, DateTime? RedemptionDate, string? ReferenceId,
        string? Status, string? Subject, string? Type, string? Authorization);
}

public sealed class SqlitePreparedTokenReaderTests(SqliteServerFixture server) : PreparedTokenReaderTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlPreparedTokenReaderTests(PostgreSqlServerFixture server) : PreparedTokenReaderTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
