using IdentityServer.Accounts;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Data;

/// <summary>
/// Text longer than its column is refused by PostgreSQL (SQLite stores it). The fields a request can set are checked
/// before they are written; one that slipped through must still be the request's fault (400), not "the database is
/// unavailable" (503), which is what any other database error answers.
/// </summary>
public sealed class PostgreSqlUnstorableTextTests(PostgreSqlServerFixture server) : IClassFixture<PostgreSqlServerFixture>
{
    [SkippableFact]
    public async Task A_value_longer_than_its_column_is_told_apart_from_an_unreachable_database()
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();

        // Identity's own validation does not check the length: the database is what refuses it.
        var failure = await Assert.ThrowsAsync<DbUpdateException>(() =>
            users.CreateAsync(new ApplicationUser { UserName = Unique.Name("long").PadRight(257, 'a') }));

        Assert.True(DatabaseErrors.IsUnstorableText(failure));
        Assert.False(DatabaseErrors.IsUnstorableText(new DbUpdateException("unrelated", new InvalidOperationException())));
    }
}
