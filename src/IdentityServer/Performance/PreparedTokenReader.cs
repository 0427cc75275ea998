using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using IdentityServer.Data;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Npgsql;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// On SQLite and PostgreSQL, the lookup made for every token presented (by id: introspection, refresh; by reference id:
/// a code being redeemed) runs on a few connections kept open with the statement prepared once. The entry's
/// authorization is then attached to the request's context, unchanged, as EF Core's tracking query would have left it;
/// the entry itself is handed back detached, with its foreign keys, and <see cref="BatchingTokenStore"/> attaches it only
/// if it is about to be written (most presented tokens are only read: attaching was about a tenth of an
/// introspection's CPU). Through EF Core each lookup took a pooled connection (on SQLite registering EF Core's SQL
/// functions on it and removing them again on close), had the SQL parsed and planned again and ran the query pipeline:
/// about a third of an introspection's CPU on SQLite. Reads only: writes stay with EF Core (and on SQLite the write
/// gate). These connections read what is committed, and every entry a request can present was committed before it was
/// handed out. On PostgreSQL lookups waiting at the same moment share one statement (<see cref="GroupedLookups"/>).
/// Other providers (SQL Server) keep EF Core's compiled queries.
/// </summary>
public sealed partial class PreparedTokenReader : IAsyncDisposable
{
    /// <summary>Idle connections kept per database; more are opened under a burst and closed when returned.</summary>
    private static readonly int MaxIdleSessions = Math.Max(2, Environment.ProcessorCount * 2);

    private readonly ConcurrentDictionary<string, IdleSessions> _idle = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<IModel, Layout?> _layouts = new();
    private readonly ILogger<PreparedTokenReader> _logger;
    private volatile bool _disposed;

    public PreparedTokenReader(ILogger<PreparedTokenReader> logger) => _logger = logger;

    public enum Key { Id, ReferenceId }

    /// <summary>Whether lookups on this context go through the reader: SQLite or PostgreSQL, with the token and authorization columns it knows.</summary>
    public bool Supports(DbContext db) => LayoutOf(db) is not null;

    /// <summary>A token entry as read: the instance the context already tracks, or a new one left detached, with its foreign keys.</summary>
    public sealed record ReadToken(OpenIddictEntityFrameworkCoreToken Entity, string? ApplicationId, string? AuthorizationId, bool Tracked);

    /// <summary>
    /// The entry whose <paramref name="key"/> is <paramref name="value"/>, with its authorization attached to
    /// <paramref name="db"/>; null if there is none.
    /// </summary>
    public async Task<ReadToken?> FindAsync(DbContext db, Key key, string value, CancellationToken cancellationToken)
    {
        var layout = LayoutOf(db) ?? throw new InvalidOperationException("The token reader does not support this model.");
        var connectionString = db.Database.GetConnectionString()
            ?? throw new InvalidOperationException("The context has no connection string.");

        var (token, authorization) = await ReadAsync(connectionString, layout, key, value, cancellationToken);
        if (token is null)
        {
            return null;
        }

        // Identity resolution, as a tracking query does: instances the context already tracks win over what was read.
        if (TrackedEntities.Find<OpenIddictEntityFrameworkCoreToken>(db, token.Entity.Id) is { } tracked)
        {
            return new ReadToken(tracked, null, null, Tracked: true);
        }

        if (authorization is not null)
        {
            token.Entity.Authorization = TrackedEntities.Find<OpenIddictEntityFrameworkCoreAuthorization>(db, authorization.Entity.Id)
                ?? Attach(db, authorization.Entity, authorization.ApplicationId);
        }

        return new ReadToken(token.Entity, token.ApplicationId, token.AuthorizationId, Tracked: false);
    }

    private async Task<(Row<OpenIddictEntityFrameworkCoreToken>? Token, Row<OpenIddictEntityFrameworkCoreAuthorization>? Authorization)> ReadAsync(
        string connectionString, Layout layout, Key key, string value, CancellationToken cancellationToken)
    {
        var idle = _idle.GetOrAdd(connectionString, static (connectionString, state) => new IdleSessions(state.Reader, connectionString, state.Layout), (Reader: this, Layout: layout));
        if (idle.Grouped(key) is { } grouped)
        {
            return await grouped.FindAsync(value, cancellationToken);
        }

        var session = await RentAsync(idle, cancellationToken);
        var healthy = false;
        try
        {
            var command = key == Key.Id ? session.ById : session.ByReferenceId;
            command.Parameters[0].Value = value;
            (Row<OpenIddictEntityFrameworkCoreToken>?, Row<OpenIddictEntityFrameworkCoreAuthorization>?) result;
            await using (var reader = await command.ExecuteReaderAsync(CommandBehavior.SingleRow, cancellationToken))
            {
                result = await reader.ReadAsync(cancellationToken) ? (layout.ReadToken(reader), layout.ReadAuthorization(reader)) : (null, null);
            }

            healthy = true;
            return result;
        }
        finally
        {
            await ReturnAsync(idle, session, healthy);
        }
    }

    private static async ValueTask<Session> RentAsync(IdleSessions idle, CancellationToken cancellationToken) =>
        idle.Bag.TryTake(out var available) ? available : await Session.OpenAsync(idle.ConnectionString, idle.Layout, cancellationToken);

    /// <summary>
    /// A connection that failed or was cancelled mid-read (the database gone, say) is not kept: the next lookup opens a
    /// new one.
    /// </summary>
    private async ValueTask ReturnAsync(IdleSessions idle, Session session, bool healthy)
    {
        if (healthy && !_disposed && idle.Bag.Count < idle.Limit)
        {
            idle.Bag.Add(session);
        }
        else
        {
            await session.DisposeAsync();
        }
    }

    /// <summary>Starts tracking a read authorization as unchanged, its shadow foreign key set first, so it is its original value.</summary>
    private static OpenIddictEntityFrameworkCoreAuthorization Attach(DbContext db, OpenIddictEntityFrameworkCoreAuthorization authorization, string? applicationId)
    {
        var entry = TrackedEntities.Entry(db, authorization);
        entry.Property(BatchingTokenStore.ApplicationIdProperty).CurrentValue = applicationId;
        entry.State = EntityState.Unchanged;
        return authorization;
    }

    /// <summary>For tests: what a session prepares for a lookup by <paramref name="key"/> on this context's database, and the query in it.</summary>
    internal (string CommandText, string Lookup) StatementOf(DbContext db, Key key)
    {
        var layout = LayoutOf(db) ?? throw new InvalidOperationException("The token reader does not support this model.");
        return (layout.CommandText(key), layout.Lookup(key));
    }

    /// <summary>Decided once per model (each provider has a model of its own): SQLite or PostgreSQL, and columns the reader knows.</summary>
    private Layout? LayoutOf(DbContext db) => _layouts.GetOrAdd(db.Model, static (model, state) =>
    {
        var provider = DatabaseProviders.Of(state.Db);
        if (provider is not (DatabaseProvider.Sqlite or DatabaseProvider.PostgreSql))
        {
            return null;
        }

        var layout = Layout.From(model, provider.Value, out var problem);
        if (layout is null)
        {
            state.Logger.LogWarning("Token lookups use EF Core queries: {Problem}", problem);
        }

        return layout;
    }, (Db: db, Logger: _logger));

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        foreach (var idle in _idle.Values)
        {
            foreach (var grouped in idle.Started)
            {
                await grouped.DisposeAsync();
            }

            while (idle.Bag.TryTake(out var session))
            {
                await session.DisposeAsync();
            }
        }
    }

    private sealed record Row<T>(T Entity, string? ApplicationId, string? AuthorizationId);

    /// <summary>
    /// How many connections may wait open for the next lookup. On PostgreSQL they come out of the pool EF Core draws
    /// from too, so at most a quarter of it: kept open, a small pool's every connection could otherwise sit here,
    /// and every other query of the server would wait for one until it timed out.
    /// </summary>
    private static int IdleLimit(string connectionString, DatabaseProvider provider) =>
        provider == DatabaseProvider.PostgreSql ? Math.Clamp(PostgreSqlPoolSize(connectionString) / 4, 1, MaxIdleSessions) : MaxIdleSessions;

    private static int PostgreSqlPoolSize(string connectionString) => new NpgsqlConnectionStringBuilder(connectionString).MaxPoolSize;

    /// <summary>The open connections of one database, and on PostgreSQL its grouped lookups (by id, by reference id), started at first use.</summary>
    private sealed class IdleSessions
    {
        private readonly Lazy<GroupedLookups>? _byId, _byReferenceId;

        private readonly PreparedTokenReader _reader;

        public IdleSessions(PreparedTokenReader reader, string connectionString, Layout layout)
        {
            _reader = reader;
            ConnectionString = connectionString;
            Layout = layout;
            Limit = IdleLimit(connectionString, layout.Provider);
            if (layout.Grouped)
            {
                _byId = new Lazy<GroupedLookups>(() => new GroupedLookups(reader, this, Key.Id));
                _byReferenceId = new Lazy<GroupedLookups>(() => new GroupedLookups(reader, this, Key.ReferenceId));
            }
        }

        public string ConnectionString { get; }

        public Layout Layout { get; }

        public int Limit { get; }

        public ConcurrentBag<Session> Bag { get; } = [];

        /// <summary>Null where lookups go one by one (SQLite: in process, there is no round trip to save).</summary>
        public GroupedLookups? Grouped(Key key)
        {
            // Not started after the reader is disposed: nothing would stop them.
            ObjectDisposedException.ThrowIf(_reader._disposed, _reader);
            return (key == Key.Id ? _byId : _byReferenceId)?.Value;
        }

        public IEnumerable<GroupedLookups> Started =>
            new[] { _byId, _byReferenceId }.Where(lookups => lookups is { IsValueCreated: true }).Select(lookups => lookups!.Value);
    }

    /// <summary>An open connection with both lookups prepared (on PostgreSQL, grouped: their parameter is an array).</summary>
    private sealed class Session(DbConnection connection, DbCommand byId, DbCommand byReferenceId) : IAsyncDisposable
    {
        public DbCommand ById { get; } = byId;

        public DbCommand ByReferenceId { get; } = byReferenceId;

        public static async Task<Session> OpenAsync(string connectionString, Layout layout, CancellationToken cancellationToken)
        {
            DbConnection connection = layout.Provider == DatabaseProvider.Sqlite ? new SqliteConnection(connectionString) : new NpgsqlConnection(connectionString);
            try
            {
                await connection.OpenAsync(cancellationToken);
                return new Session(connection,
                    await PrepareAsync(connection, layout.CommandText(Key.Id), layout.Grouped, cancellationToken),
                    await PrepareAsync(connection, layout.CommandText(Key.ReferenceId), layout.Grouped, cancellationToken));
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }
        }

        /// <param name="textArray">PostgreSQL's <c>text[]</c> (which <see cref="DbType"/> cannot name) rather than text.</param>
        private static async Task<DbCommand> PrepareAsync(DbConnection connection, string sql, bool textArray, CancellationToken cancellationToken)
        {
            var command = connection.CreateCommand();
            command.CommandText = sql;
            var parameter = command.CreateParameter();
            parameter.ParameterName = "@value";
            if (textArray)
            {
                ((NpgsqlParameter)parameter).NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text;
            }
            else
            {
                parameter.DbType = DbType.String;
            }

            command.Parameters.Add(parameter);
            await command.PrepareAsync(cancellationToken);
            return command;
        }

        public async ValueTask DisposeAsync()
        {
            await ById.DisposeAsync();
            await ByReferenceId.DisposeAsync();
            await connection.DisposeAsync();
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

        /// <summary>
        /// Planner settings for the grouped lookups on PostgreSQL, for their transaction only. They are point lookups,
        /// whose best plan is always an index probe; but PostgreSQL keeps the generic plan of a prepared statement made
        /// while the token table was small (a sequential scan: right for ten rows, not for the table a fresh server
        /// grows to before its first automatic ANALYZE, when each grouped lookup read every row, 4-6 ms). Set per
        /// transaction rather than per connection, so nothing is left on a connection returned to the pool or behind a
        /// connection pooler.
        /// </summary>
        public const string PointLookupPlans =
            "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)";

        private readonly string _byId, _byReferenceId;

        private Layout(DatabaseProvider provider, string byId, string byReferenceId)
        {
            Provider = provider;
            _byId = byId;
            _byReferenceId = byReferenceId;
        }

        public DatabaseProvider Provider { get; }

        /// <summary>The query alone.</summary>
        public string Lookup(Key key) => key == Key.Id ? _byId : _byReferenceId;

        /// <summary>What a session prepares: on PostgreSQL the query in a transaction with its planner settings, one round trip.</summary>
        public string CommandText(Key key) => Grouped ? $"BEGIN; {PointLookupPlans}; {Lookup(key)}; COMMIT" : Lookup(key);

        /// <summary>Moves past the planner settings' result to the query's rows.</summary>
        public async Task SkipToRowsAsync(DbDataReader reader)
        {
            while (reader.FieldCount != TokenProperties.Length + AuthorizationProperties.Length)
            {
                if (!await reader.NextResultAsync())
                {
                    throw new InvalidOperationException("The token lookup returned no rows.");
                }
            }
        }

        /// <summary>
        /// Whether lookups are grouped (<see cref="GroupedLookups"/>), on PostgreSQL: the statements then read the entries
        /// whose key is any of the array <c>@value</c>'s.
        /// </summary>
        public bool Grouped => Provider == DatabaseProvider.PostgreSql;

        /// <summary>The column of a row read that holds the key looked up.</summary>
        public static int KeyOrdinal(Key key) => Array.IndexOf(TokenProperties,
            key == Key.Id ? nameof(OpenIddictEntityFrameworkCoreToken.Id) : nameof(OpenIddictEntityFrameworkCoreToken.ReferenceId));

        public static Layout? From(IModel model, DatabaseProvider provider, out string? problem)
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
            var id = TokenColumn(nameof(OpenIddictEntityFrameworkCoreToken.Id));
            var referenceId = TokenColumn(nameof(OpenIddictEntityFrameworkCoreToken.ReferenceId));
            var match = provider == DatabaseProvider.PostgreSql ? " = ANY(@value)" : " = @value LIMIT 1";
            return new Layout(provider, select + id + match, select + referenceId + match);
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

        public Row<OpenIddictEntityFrameworkCoreToken> ReadToken(DbDataReader reader) => new(
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
        public Row<OpenIddictEntityFrameworkCoreAuthorization>? ReadAuthorization(DbDataReader reader) =>
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

        private static string? Text(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

        private static DateTime? Date(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetDateTime(ordinal);
    }
}
