using System.Data.Common;
using System.Runtime.CompilerServices;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>A token entry as a row: the entry, with its client and authorization by id.</summary>
public readonly record struct TokenRow(OpenIddictEntityFrameworkCoreToken Token, string? ApplicationId, string? AuthorizationId);

/// <summary>A new authorization as a row: the authorization, with its client by id.</summary>
public readonly record struct AuthorizationRow(OpenIddictEntityFrameworkCoreAuthorization Authorization, string? ApplicationId);

/// <summary>
/// What one request writes: its new entries, and at most one stored entry it changed (the code or refresh token it
/// redeemed), which is only overwritten if it still holds the concurrency token and the status it was read with.
/// The status is checked too: this server's revocations give revoked entries a new concurrency token
/// (<see cref="BatchingTokenStore"/>), but OpenIddict's own bulk revocations change the status alone, and a redemption
/// read before a revocation must never write "redeemed" over "revoked" and store the successors of a revoked token.
/// New authorizations the new entries belong to (a sign-in's ad-hoc authorization, made with its code) are inserted
/// with them, first.
/// </summary>
public sealed record TokenChanges(IReadOnlyList<TokenRow> Inserts, TokenRow? Update = null, string? ExpectedConcurrencyToken = null, string? ExpectedStatus = null,
    IReadOnlyList<AuthorizationRow>? NewAuthorizations = null)
{
    /// <summary>How many rows these changes write: the new ones and the updated one.</summary>
    public int Rows => Inserts.Count + (Update is null ? 0 : 1) + (NewAuthorizations?.Count ?? 0);
}

/// <summary>
/// Writes the token entries of several requests in one transaction: each request's update as one UPDATE guarded by
/// its concurrency token, then the new rows (on SQLite one prepared single-row INSERT per row, on PostgreSQL one INSERT
/// from an array per column), with the table, columns and parameter conversions taken from the EF Core model. For the
/// group-commit writer: going through SaveChanges (change tracking, a modification command per row) was two thirds of
/// the writer's CPU and 6% of a client credentials token's, and a redeeming request's own SaveChanges 12% of a
/// refresh's. Used on SQLite and PostgreSQL, where the tests run it; other providers keep SaveChanges.
/// </summary>
public static class TokenRowWriter
{
    private static readonly ConditionalWeakTable<IModel, Table<TokenRow>> Tables = [];

    private static readonly ConditionalWeakTable<IModel, Table<AuthorizationRow>> AuthorizationTables = [];

    public static bool Supports(DbContext db) =>
        DatabaseProviders.Of(db) is DatabaseProvider.Sqlite or DatabaseProvider.PostgreSql;

    /// <summary>
    /// Writes the changes and commits. Returns, for each request's changes, whether they were written: false when its
    /// update found the entry changed since it was read (another request redeemed or revoked it first), in which case
    /// none of its rows are written. The transaction is EF Core's, so the SQLite write gate (an EF Core interceptor)
    /// holds SQLite's single writer for it as for any other write.
    /// </summary>
    public static async Task<bool[]> WriteAsync(DbContext db, IReadOnlyList<TokenChanges> changes, CancellationToken cancellationToken)
    {
        var table = Tables.GetValue(db.Model, _ => Table<TokenRow>.From(db, typeof(OpenIddictEntityFrameworkCoreToken), TokenReader));
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var written = new bool[changes.Count];
        var inserts = new List<TokenRow>();
        var authorizations = new List<AuthorizationRow>();
        for (var i = 0; i < changes.Count; i++)
        {
            written[i] = changes[i].Update is not { } update
                || await UpdateAsync(db, transaction, table, update, changes[i].ExpectedConcurrencyToken, changes[i].ExpectedStatus, cancellationToken);
            if (written[i])
            {
                inserts.AddRange(changes[i].Inserts);
                authorizations.AddRange(changes[i].NewAuthorizations ?? []);
            }
        }

        if (authorizations.Count > 0)
        {
            // First: the new entries name them. As the entries: on PostgreSQL one statement for all (a round trip per
            // row made the single writer's batches longer, and sign-ins on PostgreSQL waited on it).
            var authorizationTable = AuthorizationTables.GetValue(db.Model, _ => Table<AuthorizationRow>.From(db, typeof(OpenIddictEntityFrameworkCoreAuthorization), AuthorizationReader));
            await InsertAsync(db, transaction, authorizationTable, authorizations, cancellationToken);
        }

        await InsertAsync(db, transaction, table, inserts, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return written;
    }

    private static async Task<bool> UpdateAsync(DbContext db, IDbContextTransaction transaction, Table<TokenRow> table, TokenRow row, string? expectedConcurrencyToken,
        string? expectedStatus, CancellationToken cancellationToken)
    {
        await using var command = NewCommand(db, transaction, table.UpdateStatement(expectedConcurrencyToken is null, expectedStatus is null));
        for (var column = 0; column < table.Updated.Length; column++)
        {
            AddParameter(command, table.Updated[column], table.ParameterNames[column], table.Updated[column].Read(row));
        }

        AddParameter(command, table.Key, "@key", table.Key.Read(row));
        if (expectedConcurrencyToken is not null)
        {
            AddParameter(command, table.Concurrency, "@expected", expectedConcurrencyToken);
        }

        if (expectedStatus is not null)
        {
            AddParameter(command, table.Status, "@expectedStatus", expectedStatus);
        }

        return await ExecuteAsync(command, cancellationToken) == 1;
    }

    private static async Task InsertAsync<TRow>(DbContext db, IDbContextTransaction transaction, Table<TRow> table, List<TRow> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }

        if (table.ColumnArrays is { } arrays)
        {
            await InsertFromArraysAsync(db, transaction, table, arrays, rows, cancellationToken);
            return;
        }

        await InsertRowByRowAsync(db, transaction, table, rows, cancellationToken);
    }

    /// <summary>
    /// SQLite (and a token table PostgreSQL could not take as arrays, which this model never has): one single-row
    /// INSERT, prepared once per batch and run for each row with its values. SQLite runs in process, so a statement per
    /// row costs no round trip, where a multi-row VALUES list was a new statement for each batch size, parsed on every
    /// commit, whose named parameters SQLite looks up one by one through a list of all of them (a batch of 15 entries
    /// binds 210, about 22,000 name comparisons).
    /// </summary>
    private static async Task InsertRowByRowAsync<TRow>(DbContext db, IDbContextTransaction transaction, Table<TRow> table, List<TRow> rows, CancellationToken cancellationToken)
    {
        await using var command = NewCommand(db, transaction, table.InsertRowStatement);
        foreach (var row in rows)
        {
            // New values on the same command: Microsoft.Data.Sqlite keeps the statement prepared while its text is unchanged.
            command.Parameters.Clear();
            for (var column = 0; column < table.Columns.Length; column++)
            {
                AddParameter(command, table.Columns[column], table.ParameterNames[column], table.Columns[column].Read(row));
            }

            await ExecuteAsync(command, cancellationToken);
        }
    }

    /// <summary>
    /// PostgreSQL: every batch, whatever its size, is the same statement with one array parameter per column
    /// (<c>INSERT ... SELECT * FROM unnest(@p0, @p1, ...)</c>). Npgsql prepares it once per connection, where a
    /// multi-row VALUES list was a statement of its own for each batch size (hundreds of prepared statements, each with
    /// its parameter and type arrays, kept on every connection), and a batch binds a dozen parameters instead of one per
    /// value.
    /// </summary>
    private static async Task InsertFromArraysAsync<TRow>(DbContext db, IDbContextTransaction transaction, Table<TRow> table, ColumnArray[] arrays,
        List<TRow> rows, CancellationToken cancellationToken)
    {
        await using var command = NewCommand(db, transaction, table.InsertFromArraysStatement);
        for (var column = 0; column < table.Columns.Length; column++)
        {
            var values = arrays[column].NewArray(rows.Count);
            for (var row = 0; row < rows.Count; row++)
            {
                values.SetValue(table.Columns[column].Read(rows[row]), row);
            }

            command.Parameters.Add(new NpgsqlParameter(table.ParameterNames[column], NpgsqlDbType.Array | arrays[column].Type) { Value = values });
        }

        await ExecuteAsync(command, cancellationToken);
    }

    /// <summary>Runs a command of the writer's own: not an EF Core command, so a failure is not seen by its interceptor.</summary>
    private static async Task<int> ExecuteAsync(DbCommand command, CancellationToken cancellationToken)
    {
        try
        {
            return await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (Exception e)
        {
            PreparedStatementRepair.Repair(command, e);
            throw;
        }
    }

    private static DbCommand NewCommand(DbContext db, IDbContextTransaction transaction, string sql)
    {
        var command = db.Database.GetDbConnection().CreateCommand();
        command.Transaction = transaction.GetDbTransaction();
        command.CommandText = sql;
        return command;
    }

    private static void AddParameter<TRow>(DbCommand command, Column<TRow> column, string name, object? value) =>
        command.Parameters.Add(column.Mapping.CreateParameter(command, name, value, nullable: true));

    private sealed record Column<TRow>(string Name, RelationalTypeMapping Mapping, Func<TRow, object?> Read);

    /// <summary>How a column's values travel as one PostgreSQL array parameter: its element type, and a new array of them.</summary>
    private sealed record ColumnArray(NpgsqlDbType Type, Func<int, Array> NewArray);

    private sealed class Table<TRow>(string name, Column<TRow>[] columns, Column<TRow> key, Column<TRow> concurrency, Column<TRow> status, ColumnArray[]? columnArrays)
    {
        /// <summary>On PostgreSQL, when every column is text or a date without conversion: the array of each column.</summary>
        public ColumnArray[]? ColumnArrays { get; } = columnArrays;

        /// <summary>The parameter of each column, by its position: <c>@p0</c>, <c>@p1</c>, ...</summary>
        public string[] ParameterNames { get; } = [.. columns.Select((_, i) => ParameterName(i))];

        /// <summary>PostgreSQL's INSERT of a whole batch, one array parameter per column.</summary>
        public string InsertFromArraysStatement { get; } = $"INSERT INTO {name} ({ColumnList(columns)}) SELECT * FROM unnest({ParameterList(columns)})";

        /// <summary>The INSERT of one row, one parameter per column.</summary>
        public string InsertRowStatement { get; } = $"INSERT INTO {name} ({ColumnList(columns)}) VALUES ({ParameterList(columns)})";

        /// <summary>Every column, in the order of the INSERT's values.</summary>
        public Column<TRow>[] Columns { get; } = columns;

        /// <summary>The columns an update overwrites (all but the key), as EF Core's update of the whole entry does.</summary>
        public Column<TRow>[] Updated { get; } = [.. columns.Where(column => column != key)];

        public Column<TRow> Key { get; } = key;

        public Column<TRow> Concurrency { get; } = concurrency;

        public Column<TRow> Status { get; } = status;

        private static string ParameterName(int position) => $"@p{position}";

        private static string ColumnList(Column<TRow>[] columns) => string.Join(", ", columns.Select(column => column.Name));

        private static string ParameterList(Column<TRow>[] columns) => string.Join(", ", columns.Select((_, i) => ParameterName(i)));

        public string UpdateStatement(bool expectsNoConcurrencyToken, bool expectsNoStatus) =>
            $"UPDATE {name} SET {string.Join(", ", Updated.Select((column, i) => $"{column.Name} = {ParameterName(i)}"))} " +
            $"WHERE {Key.Name} = @key AND {Concurrency.Name} {(expectsNoConcurrencyToken ? "IS NULL" : "= @expected")} " +
            $"AND {Status.Name} {(expectsNoStatus ? "IS NULL" : "= @expectedStatus")}";

        /// <summary>Every column of the entity's table, each read from a row by <paramref name="reader"/>.</summary>
        public static Table<TRow> From(DbContext db, Type entityType, Func<IProperty, Func<TRow, object?>> reader)
        {
            var entity = db.Model.FindEntityType(entityType)
                ?? throw new InvalidOperationException($"The model has no {entityType.Name} entity.");
            var store = StoreObjectIdentifier.Table(entity.GetTableName()!, entity.GetSchema());
            var sql = db.GetService<ISqlGenerationHelper>();
            var properties = entity.GetProperties().Where(property => property.GetColumnName(store) is not null).ToArray();
            if (properties.FirstOrDefault(property => property.GetDefaultValueSql(store) is not null || property.GetComputedColumnSql(store) is not null) is { } generated)
            {
                throw new InvalidOperationException($"The {entity.DisplayName()} column {generated.Name} is generated by the database; the row writer does not support it.");
            }

            Column<TRow>[] columns = [.. properties.Select(property =>
                new Column<TRow>(sql.DelimitIdentifier(property.GetColumnName(store)!), property.GetRelationalTypeMapping(), reader(property)))];
            var key = entity.FindPrimaryKey()?.Properties is [var keyProperty] ? columns[Array.IndexOf(properties, keyProperty)]
                : throw new InvalidOperationException($"The {entity.DisplayName()} entity's key is not a single column; the row writer does not support it.");
            var concurrency = properties.SingleOrDefault(property => property.IsConcurrencyToken) is { } concurrencyProperty ? columns[Array.IndexOf(properties, concurrencyProperty)]
                : throw new InvalidOperationException($"The {entity.DisplayName()} entity has no single concurrency token; the row writer does not support it.");
            var status = columns[Array.FindIndex(properties, property => property.Name == nameof(OpenIddictEntityFrameworkCoreToken.Status))];
            return new Table<TRow>(sql.DelimitIdentifier(store.Name, store.Schema), columns, key, concurrency, status, PostgreSqlArrays(db, properties, store));
        }

        private static ColumnArray[]? PostgreSqlArrays(DbContext db, IProperty[] properties, StoreObjectIdentifier store)
        {
            if (DatabaseProviders.Of(db) != DatabaseProvider.PostgreSql)
            {
                return null;
            }

            var arrays = properties.Select(property => property.GetValueConverter() is not null ? null : property.ClrType switch
            {
                var type when type == typeof(string) => new ColumnArray(NpgsqlDbType.Text, length => new string?[length]),
                var type when type == typeof(DateTime?) && property.GetColumnType(store) == "timestamp with time zone" =>
                    new ColumnArray(NpgsqlDbType.TimestampTz, length => new DateTime?[length]),
                _ => null,
            }).ToArray();
            return arrays.All(array => array is not null) ? [.. arrays.Select(array => array!)] : null;
        }

    }

    /// <summary>A token column's value: from the entry, its client and authorization by the ids given.</summary>
    private static Func<TokenRow, object?> TokenReader(IProperty property) => property.Name switch
    {
        BatchingTokenStore.ApplicationIdProperty => row => row.ApplicationId,
        BatchingTokenStore.AuthorizationIdProperty => row => row.AuthorizationId,
        _ when property.IsShadowProperty() => throw new InvalidOperationException($"The token property {property.Name} has no value to write."),
        _ => row => property.GetGetter().GetClrValue(row.Token),
    };

    /// <summary>An authorization column's value: from the authorization, its client by the id given.</summary>
    private static Func<AuthorizationRow, object?> AuthorizationReader(IProperty property) => property.Name switch
    {
        BatchingTokenStore.ApplicationIdProperty => row => row.ApplicationId,
        _ when property.IsShadowProperty() => throw new InvalidOperationException($"The authorization property {property.Name} has no value to write."),
        _ => row => property.GetGetter().GetClrValue(row.Authorization),
    };
}
