using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// On SQLite, the lookup made for every token presented (by id: introspection, refresh; by reference id: a code being
/// redeemed) reads from a few connections kept open with the statement prepared once, and the entry and its
/// authorization are then attached to the request's context, unchanged, as EF Core's tracking query would have left
/// them. Through EF Core each lookup opened a pooled connection (registering EF Core's SQL functions on it and removing
/// them again on close), parsed and planned the SQL again and ran the query pipeline: about a third of an
/// introspection's CPU. Reads only: writes stay with EF Core and the write gate. Write-ahead logging lets these
/// connections read what is committed while a writer writes, and every entry a request can present was committed
/// before it was handed out.
/// </summary>
public sealed class SqliteTokenReader : IDisposable
{
    /// <summary>Idle connections kept per database; more are opened under a burst and closed when returned.</summary>
    private static readonly int MaxIdleSessions = Math.Max(2, Environment.ProcessorCount * 2);

    private readonly ConcurrentDictionary<string, ConcurrentBag<Session>> _idle = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<IModel, Layout?> _layouts = new();
    private readonly ILogger<SqliteTokenReader> _logger;
    private bool _disposed;

    public SqliteTokenReader(ILogger<SqliteTokenReader> logger) => _logger = logger;

    public enum Key { Id, ReferenceId }

    /// <summary>Whether lookups on this context go through the reader: SQLite, with the token and authorization columns it knows.</summary>
    public bool Supports(DbContext db) => LayoutOf(db) is not null;

    /// <summary>The entry whose <paramref name="key"/> is <paramref name="value"/>, attached to <paramref name="db"/> with its authorization; null if there is none.</summary>
    public OpenIddictEntityFrameworkCoreToken? Find(DbContext db, Key key, string value)
    {
        var layout = LayoutOf(db) ?? throw new InvalidOperationException("The token reader does not support this model.");
        var connectionString = db.Database.GetConnectionString()
            ?? throw new InvalidOperationException("The context has no connection string.");

        var (token, authorization) = Read(connectionString, layout, key, value);
        if (token is null)
        {
            return null;
        }

        // Identity resolution, as a tracking query does: instances the context already tracks win over what was read.
        if (TrackedEntities.Find<OpenIddictEntityFrameworkCoreToken>(db, token.Entity.Id) is { } tracked)
        {
            return tracked;
        }

        if (authorization is not null)
        {
            token.Entity.Authorization = TrackedEntities.Find<OpenIddictEntityFrameworkCoreAuthorization>(db, authorization.Entity.Id)
                ?? Attach(db, authorization.Entity, BatchingTokenStore.ApplicationIdProperty, authorization.ApplicationId, null, null);
        }

        return Attach(db, token.Entity, BatchingTokenStore.ApplicationIdProperty, token.ApplicationId, BatchingTokenStore.AuthorizationIdProperty, token.AuthorizationId);
    }

    private (Row<OpenIddictEntityFrameworkCoreToken>? Token, Row<OpenIddictEntityFrameworkCoreAuthorization>? Authorization) Read(
        string connectionString, Layout layout, Key key, string value)
    {
        var idle = _idle.GetOrAdd(connectionString, static _ => []);
        var session = idle.TryTake(out var available) ? available : Session.Open(connectionString, layout);
        var healthy = false;
        try
        {
            var command = key == Key.Id ? session.ById : session.ByReferenceId;
            command.Parameters[0].Value = value;
            using var reader = command.ExecuteReader();
            var result = reader.Read() ? (layout.ReadToken(reader), layout.ReadAuthorization(reader)) : (null, null);
            healthy = true;
            return result;
        }
        finally
        {
            // A connection that failed (the database gone, say) is not kept: the next lookup opens a new one.
            if (healthy && !_disposed && idle.Count < MaxIdleSessions)
            {
                idle.Add(session);
            }
            else
            {
                session.Dispose();
            }
        }
    }

    /// <summary>Starts tracking a read entity as unchanged, its shadow foreign keys set first, so they are its original values.</summary>
    private static T Attach<T>(DbContext db, T entity, string foreignKey, string? foreignKeyValue, string? otherForeignKey, string? otherForeignKeyValue)
        where T : class
    {
        var entry = TrackedEntities.Entry(db, entity);
        entry.Property(foreignKey).CurrentValue = foreignKeyValue;
        if (otherForeignKey is not null)
        {
            entry.Property(otherForeignKey).CurrentValue = otherForeignKeyValue;
        }

        entry.State = EntityState.Unchanged;
        return entity;
    }

    /// <summary>Decided once per model (each provider has a model of its own): SQLite, and columns the reader knows.</summary>
    private Layout? LayoutOf(DbContext db) => _layouts.GetOrAdd(db.Model, static (model, state) =>
    {
        if (state.Db.Database.ProviderName != "Microsoft.EntityFrameworkCore.Sqlite")
        {
            return null;
        }

        var layout = Layout.From(model, out var problem);
        if (layout is null)
        {
            state.Logger.LogWarning("Token lookups on SQLite use EF Core queries: {Problem}", problem);
        }

        return layout;
    }, (Db: db, Logger: _logger));

    public void Dispose()
    {
        _disposed = true;
        foreach (var idle in _idle.Values)
        {
            while (idle.TryTake(out var session))
            {
                session.Dispose();
            }
        }
    }

    private sealed record Row<T>(T Entity, string? ApplicationId, string? AuthorizationId);

    /// <summary>An open connection with both lookups prepared.</summary>
    private sealed class Session(SqliteConnection connection, SqliteCommand byId, SqliteCommand byReferenceId) : IDisposable
    {
        public SqliteCommand ById { get; } = byId;

        public SqliteCommand ByReferenceId { get; } = byReferenceId;

        public static Session Open(string connectionString, Layout layout)
        {
            var connection = new SqliteConnection(connectionString);
            try
            {
                connection.Open();
                return new Session(connection, Prepare(connection, layout.SelectById), Prepare(connection, layout.SelectByReferenceId));
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }

        private static SqliteCommand Prepare(SqliteConnection connection, string sql)
        {
            var command = connection.CreateCommand();
            command.CommandText = sql;
            command.Parameters.Add(new SqliteParameter("@value", SqliteType.Text));
            command.Prepare();
            return command;
        }

        public void Dispose()
        {
            ById.Dispose();
            ByReferenceId.Dispose();
            connection.Dispose();
        }
    }

    /// <summary>
    /// The statements and column order, from the EF Core model (table and column names as mapped). Only the token and
    /// authorization properties listed here are known; a model with others (a later OpenIddict) is left to EF Core.
    /// </summary>
    private sealed class Layout
    {
        private static readonly string[] TokenProperties =
        [
            nameof(OpenIddictEntityFrameworkCoreToken.Id), BatchingTokenStore.ApplicationIdProperty, BatchingTokenStore.AuthorizationIdProperty,
            nameof(OpenIddictEntityFrameworkCoreToken.ConcurrencyToken), nameof(OpenIddictEntityFrameworkCoreToken.CreationDate),
            nameof(OpenIddictEntityFrameworkCoreToken.ExpirationDate), nameof(OpenIddictEntityFrameworkCoreToken.Payload),
            nameof(OpenIddictEntityFrameworkCoreToken.Properties), nameof(OpenIddictEntityFrameworkCoreToken.RedemptionDate),
            nameof(OpenIddictEntityFrameworkCoreToken.ReferenceId), nameof(OpenIddictEntityFrameworkCoreToken.Status),
            nameof(OpenIddictEntityFrameworkCoreToken.Subject), nameof(OpenIddictEntityFrameworkCoreToken.Type),
        ];

        private static readonly string[] AuthorizationProperties =
        [
            nameof(OpenIddictEntityFrameworkCoreAuthorization.Id), BatchingTokenStore.ApplicationIdProperty,
            nameof(OpenIddictEntityFrameworkCoreAuthorization.ConcurrencyToken), nameof(OpenIddictEntityFrameworkCoreAuthorization.CreationDate),
            nameof(OpenIddictEntityFrameworkCoreAuthorization.Properties), nameof(OpenIddictEntityFrameworkCoreAuthorization.Scopes),
            nameof(OpenIddictEntityFrameworkCoreAuthorization.Status), nameof(OpenIddictEntityFrameworkCoreAuthorization.Subject),
            nameof(OpenIddictEntityFrameworkCoreAuthorization.Type),
        ];

        /// <summary>The authorization's columns follow the token's; the readers below go by these positions.</summary>
        private static readonly int AuthorizationOffset = TokenProperties.Length;

        private Layout(string selectById, string selectByReferenceId)
        {
            SelectById = selectById;
            SelectByReferenceId = selectByReferenceId;
        }

        public string SelectById { get; }

        public string SelectByReferenceId { get; }

        public static Layout? From(IModel model, out string? problem)
        {
            var token = model.FindEntityType(typeof(OpenIddictEntityFrameworkCoreToken));
            var authorization = model.FindEntityType(typeof(OpenIddictEntityFrameworkCoreAuthorization));
            if (token is null || authorization is null)
            {
                problem = "the model has no OpenIddict token or authorization entity.";
                return null;
            }

            var tokenColumns = Columns(token, TokenProperties, out problem);
            var authorizationColumns = tokenColumns is null ? null : Columns(authorization, AuthorizationProperties, out problem);
            if (tokenColumns is null || authorizationColumns is null)
            {
                return null;
            }

            string TokenColumn(string property) => tokenColumns[Array.IndexOf(TokenProperties, property)];
            var select = $"SELECT {string.Join(", ", tokenColumns.Select(c => "t." + c).Concat(authorizationColumns.Select(c => "a." + c)))} "
                + $"FROM {Table(token)} AS t LEFT JOIN {Table(authorization)} AS a "
                + $"ON a.{authorizationColumns[0]} = t.{TokenColumn(BatchingTokenStore.AuthorizationIdProperty)} WHERE t.";
            problem = null;
            return new Layout(
                select + TokenColumn(nameof(OpenIddictEntityFrameworkCoreToken.Id)) + " = @value LIMIT 1",
                select + TokenColumn(nameof(OpenIddictEntityFrameworkCoreToken.ReferenceId)) + " = @value LIMIT 1");
        }

        /// <summary>The quoted column names of <paramref name="properties"/>, if the entity maps exactly those, as text or dates without conversion.</summary>
        private static string[]? Columns(IEntityType entity, string[] properties, out string? problem)
        {
            var store = StoreObjectIdentifier.Table(entity.GetTableName()!, entity.GetSchema());
            var mapped = entity.GetProperties().Where(p => p.GetColumnName(store) is not null).ToArray();
            if (mapped.Length != properties.Length || mapped.Any(p => !properties.Contains(p.Name)))
            {
                problem = $"{entity.ClrType.Name} maps {string.Join(", ", mapped.Select(p => p.Name))}; the reader knows {string.Join(", ", properties)}.";
                return null;
            }

            var columns = properties.Select(name => entity.FindProperty(name)!).ToArray();
            if (columns.FirstOrDefault(p => p.GetValueConverter() is not null || (p.ClrType != typeof(string) && p.ClrType != typeof(DateTime?))) is { } unusual)
            {
                problem = $"{entity.ClrType.Name}.{unusual.Name} is not stored as plain text or date.";
                return null;
            }

            problem = null;
            return [.. columns.Select(p => Quote(p.GetColumnName(store)!))];
        }

        private static string Table(IEntityType entity) =>
            (entity.GetSchema() is { } schema ? Quote(schema) + "." : "") + Quote(entity.GetTableName()!);

        private static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

        public Row<OpenIddictEntityFrameworkCoreToken> ReadToken(SqliteDataReader reader) => new(
            new OpenIddictEntityFrameworkCoreToken
            {
                Id = reader.GetString(0),
                ConcurrencyToken = Text(reader, 3),
                CreationDate = Date(reader, 4),
                ExpirationDate = Date(reader, 5),
                Payload = Text(reader, 6),
                Properties = Text(reader, 7),
                RedemptionDate = Date(reader, 8),
                ReferenceId = Text(reader, 9),
                Status = Text(reader, 10),
                Subject = Text(reader, 11),
                Type = Text(reader, 12),
            },
            Text(reader, 1),
            Text(reader, 2));

        /// <summary>The joined authorization, or null when the entry has none.</summary>
        public Row<OpenIddictEntityFrameworkCoreAuthorization>? ReadAuthorization(SqliteDataReader reader) =>
            reader.IsDBNull(AuthorizationOffset) ? null : new(
                new OpenIddictEntityFrameworkCoreAuthorization
                {
                    Id = reader.GetString(AuthorizationOffset),
                    ConcurrencyToken = Text(reader, AuthorizationOffset + 2),
                    CreationDate = Date(reader, AuthorizationOffset + 3),
                    Properties = Text(reader, AuthorizationOffset + 4),
                    Scopes = Text(reader, AuthorizationOffset + 5),
                    Status = Text(reader, AuthorizationOffset + 6),
                    Subject = Text(reader, AuthorizationOffset + 7),
                    Type = Text(reader, AuthorizationOffset + 8),
                },
                Text(reader, AuthorizationOffset + 1),
                null);

        private static string? Text(SqliteDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

        private static DateTime? Date(SqliteDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetDateTime(ordinal);
    }
}
