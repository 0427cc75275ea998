using IdentityServer.Data;
using IdentityServer.Performance;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;

namespace IdentityServer.Admin;

/// <summary>What an admin change is about to do with the row it locks.</summary>
public enum RowLockPurpose
{
    /// <summary>Update it: other changes of the row wait; writes that only refer to it (new token entries) do not.</summary>
    Change,

    /// <summary>Delete it: rows that would refer to it (a client's new token entries) wait too, and then fail.</summary>
    Delete,
}

/// <summary>
/// The row an admin change is about to change, read as stored now and locked until the change's transaction ends. So
/// two changes of one entry take turns (the second reads what the first wrote), instead of both reading the same
/// version and the second failing OpenIddict's concurrency check, which a change sent without If-Match must not do
/// (RFC 9110 section 15.5.13: 412 only for a condition the request sent). It is read from the database, never from
/// the shared cache, which may hold a version another instance has changed since.
/// </summary>
public static class LockedRows
{
    /// <summary>
    /// The <typeparamref name="T"/> whose <paramref name="property"/> is <paramref name="value"/>, tracked by
    /// <paramref name="db"/>, or null. Call it in the change's transaction: PostgreSQL locks the row <c>FOR UPDATE</c>
    /// to delete it (a new row referring to it takes <c>FOR KEY SHARE</c>, which only that mode blocks) and
    /// <c>FOR NO KEY UPDATE</c> to change it (new token entries of a client being edited go on); SQL Server takes an
    /// update lock; SQLite needs none, its transactions hold the database's one write lock from their start.
    /// </summary>
    public static async Task<T?> ReadAsync<T>(ApplicationDbContext db, string property, string value, RowLockPurpose purpose, CancellationToken ct)
        where T : class
    {
        if (string.IsNullOrEmpty(value) || !DatabaseErrors.CanBeStoredName(value))
        {
            return null;
        }

        var entityType = db.Model.FindEntityType(typeof(T)) ?? throw new InvalidOperationException($"The model has no {typeof(T).Name} entity.");
        var table = StoreObjectIdentifier.Table(entityType.GetTableName()!, entityType.GetSchema());
        var sql = db.GetService<ISqlGenerationHelper>();
        var from = sql.DelimitIdentifier(table.Name, table.Schema);
        var column = sql.DelimitIdentifier(entityType.FindProperty(property)?.GetColumnName(table)
            ?? throw new InvalidOperationException($"{typeof(T).Name} has no column for {property}."));
        var query = DatabaseProviders.Of(db) switch
        {
            DatabaseProvider.PostgreSql => $"SELECT * FROM {from} WHERE {column} = {{0}} {(purpose == RowLockPurpose.Delete ? "FOR UPDATE" : "FOR NO KEY UPDATE")}",
            DatabaseProvider.SqlServer => $"SELECT * FROM {from} WITH (UPDLOCK, ROWLOCK, HOLDLOCK) WHERE {column} = {{0}}",
            _ => $"SELECT * FROM {from} WHERE {column} = {{0}}",
        };

        // Not tracked by the query: a tracked instance (read earlier in the request) would be returned as it was, not as stored now.
        var found = (await db.Set<T>().FromSqlRaw(query, value).AsNoTracking().ToListAsync(ct)).SingleOrDefault();
        if (found is null)
        {
            return null;
        }

        var key = entityType.FindPrimaryKey()!.Properties.Single().GetGetter().GetClrValue(found) as string;
        if (TrackedEntities.Find<T>(db, key) is { } earlier)
        {
            db.Entry(earlier).State = EntityState.Detached;
        }

        db.Set<T>().Attach(found);
        return found;
    }

    /// <summary>
    /// On SQL Server, gives the row about to be deleted a new concurrency token first. A reader at read committed may
    /// skip the locks of rows on a page without uncommitted changes, so an update lock alone may not stop the check of
    /// a new token entry's foreign key; a changed row does. Elsewhere <see cref="ReadAsync"/>'s lock is enough.
    /// </summary>
    public static async Task HoldAgainstNewReferencesAsync(ApplicationDbContext db, OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreApplication application,
        CancellationToken ct)
    {
        if (DatabaseProviders.Of(db) == DatabaseProvider.SqlServer)
        {
            application.ConcurrencyToken = Guid.NewGuid().ToString();
            await db.SaveChangesAsync(ct);
        }
    }
}
