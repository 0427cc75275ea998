using IdentityServer.Data;
using IdentityServer.Performance;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Tests.Performance;

/// <summary>
/// On PostgreSQL the group-commit writer inserts every batch with one statement whatever its size (one array
/// parameter per column), so a connection keeps one prepared INSERT, not one per batch size.
/// </summary>
public sealed class PostgreSqlTokenRowWriterTests(PostgreSqlServerFixture server) : IClassFixture<PostgreSqlServerFixture>
{
    [SkippableFact]
    public async Task Batches_of_different_sizes_share_one_prepared_insert_and_store_every_value()
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        await db.Database.OpenConnectionAsync();
        try
        {
            var written = new List<OpenIddictEntityFrameworkCoreToken>();
            // Npgsql prepares a statement on a connection's fifth run of it: five batches of one row, five of three.
            foreach (var size in Enumerable.Repeat(1, 5).Concat(Enumerable.Repeat(3, 5)))
            {
                var batch = Enumerable.Range(0, size).Select(_ => NewEntry()).ToList();
                written.AddRange(batch);
                var outcome = await TokenRowWriter.WriteAsync(db, [new TokenChanges([.. batch.Select(token => new TokenRow(token, null, null))])], CancellationToken.None);
                Assert.Equal([true], outcome);
            }

            var preparedInserts = await db.Database.SqlQuery<long>(
                $"SELECT count(*) AS \"Value\" FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO \"OpenIddictTokens\"%'").SingleAsync();
            Assert.Equal(1, preparedInserts);

            var ids = written.Select(token => token.Id!).ToList();
            var stored = await db.Set<OpenIddictEntityFrameworkCoreToken>().AsNoTracking().Where(token => ids.Contains(token.Id!)).ToDictionaryAsync(token => token.Id!);
            Assert.Equal(written.Count, stored.Count);
            foreach (var token in written)
            {
                var row = stored[token.Id!];
                Assert.Equal((token.ReferenceId, token.Status, token.Subject, token.Type, token.Payload, token.Properties, token.ConcurrencyToken),
                    (row.ReferenceId, row.Status, row.Subject, row.Type, row.Payload, row.Properties, row.ConcurrencyToken));
                Assert.Equal((token.CreationDate, token.ExpirationDate, token.RedemptionDate), (row.CreationDate, row.ExpirationDate, row.RedemptionDate));
            }
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>An entry with every column set but its owners, and nulls where a token may have none.</summary>
    private static OpenIddictEntityFrameworkCoreToken NewEntry()
    {
        var now = DateTime.UtcNow;
        // PostgreSQL keeps microseconds.
        now = now.AddTicks(-(now.Ticks % 10));
        return new OpenIddictEntityFrameworkCoreToken
        {
            Id = Guid.NewGuid().ToString(),
            ConcurrencyToken = Guid.NewGuid().ToString(),
            CreationDate = now,
            ExpirationDate = now.AddHours(1),
            RedemptionDate = null,
            ReferenceId = Guid.NewGuid().ToString("N"),
            Status = "valid",
            Subject = "writer-test",
            Type = "access_token",
            Payload = null,
            Properties = "{\"x\":\"é\"}",
        };
    }
}
