using System.Diagnostics;
using System.Threading.Channels;
using IdentityServer.Data;
using IdentityServer.Telemetry;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// Group commit for token entries. Requests hand their writes to one writer and wait: a new entry, or everything a
/// redeeming token request writes (the redeemed code or refresh token and the new entries, <see cref="TokenChanges"/>).
/// The writer takes every write waiting at that moment and makes them in one transaction, then answers each request
/// once its rows are committed (or with the error, after retrying a failed batch one request at a time so one bad
/// entry fails alone). So concurrent token requests never collide on SQLite's single write lock, a burst costs one
/// commit (one fsync) instead of one per request, and nothing is acknowledged before it is durable. On PostgreSQL and
/// SQL Server the same batching saves round trips and commits.
/// </summary>
public sealed class TokenWriteQueue : IAsyncDisposable
{
    private readonly Channel<PendingWrite> _queue = Channel.CreateUnbounded<PendingWrite>(new UnboundedChannelOptions { SingleReader = true });
    private readonly IServiceScopeFactory _scopes;
    private readonly IOptions<PerformanceOptions> _options;
    private readonly ServerMetrics _metrics;
    private readonly ILogger<TokenWriteQueue> _logger;
    private readonly Task _writer;

    public TokenWriteQueue(IServiceScopeFactory scopes, IOptions<PerformanceOptions> options, ServerMetrics metrics, ILogger<TokenWriteQueue> logger)
    {
        _scopes = scopes;
        _options = options;
        _metrics = metrics;
        _logger = logger;
        _writer = Task.Run(RunWriterAsync);
    }

    /// <summary>Completes when the entry is committed (the token's <c>Id</c> is then set).</summary>
    public Task InsertAsync(OpenIddictEntityFrameworkCoreToken token, string? applicationId, string? authorizationId, CancellationToken cancellationToken) =>
        WriteAsync(new TokenChanges([new TokenRow(token, applicationId, authorizationId)]), cancellationToken);

    /// <summary>
    /// Completes when the changes are committed, with true; or with false, and nothing written, when the changes'
    /// update found its entry changed since it was read (another request redeemed or revoked it first). Updates are
    /// only written on the providers <see cref="TokenRowWriter"/> supports.
    /// </summary>
    public Task<bool> WriteAsync(TokenChanges changes, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pending = new PendingWrite(changes, cancellationToken);
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new InvalidOperationException("The server is shutting down; the token entries were not written.");
        }

        // Once the writer has taken them the changes are written whatever happens to the request, which just stops waiting.
        return pending.Written.Task.WaitAsync(cancellationToken);
    }

    /// <summary>The writer: one batch at a time, of every write waiting when it starts.</summary>
    private async Task RunWriterAsync()
    {
        var batch = new List<PendingWrite>();
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (batch.Count < _options.Value.TokenWriteBatchLimit && _queue.Reader.TryRead(out var pending))
            {
                if (pending.RequestAborted.IsCancellationRequested)
                {
                    // The request stopped waiting (its client went away) before its turn: it never answers with these
                    // tokens, and a redemption left unwritten keeps the grant usable for the client's retry.
                    pending.Written.TrySetCanceled(pending.RequestAborted);
                    continue;
                }

                batch.Add(pending);
            }

            if (batch.Count == 0)
            {
                continue;
            }

            try
            {
                var written = await WriteBatchAsync(batch);
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Written.TrySetResult(written[i]);
                }
            }
            catch (Exception) when (batch.Count > 1)
            {
                // One bad entry (say, its client deleted meanwhile) must not fail the others: one at a time.
                foreach (var pending in batch)
                {
                    try
                    {
                        pending.Written.TrySetResult((await WriteBatchAsync([pending]))[0]);
                    }
                    catch (Exception e)
                    {
                        pending.Written.TrySetException(e);
                    }
                }
            }
            catch (Exception e)
            {
                batch.ForEach(p => p.Written.TrySetException(e));
            }

            batch.Clear();
        }
    }

    private async Task<bool[]> WriteBatchAsync(IReadOnlyList<PendingWrite> batch)
    {
        var started = Stopwatch.GetTimestamp();
        var committed = false;
        try
        {
            var written = await WriteToDatabaseAsync(batch);
            committed = true;
            return written;
        }
        finally
        {
            _metrics.TokenEntriesWritten(batch.Sum(p => p.Changes.Rows), Stopwatch.GetElapsedTime(started).TotalSeconds, committed);
        }
    }

    private async Task<bool[]> WriteToDatabaseAsync(IReadOnlyList<PendingWrite> batch)
    {
        await using var scope = _scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        try
        {
            if (TokenRowWriter.Supports(db))
            {
                return await TokenRowWriter.WriteAsync(db, [.. batch.Select(p => p.Changes)], CancellationToken.None);
            }

            if (batch.Any(p => p.Changes.Update is not null))
            {
                throw new InvalidOperationException("Token entry updates go through the writer only on the providers the row writer supports.");
            }

            await SaveInsertsAsync(db, [.. batch.SelectMany(p => p.Changes.Inserts)], [.. batch.SelectMany(p => p.Changes.NewAuthorizations ?? [])]);
            return [.. batch.Select(_ => true)];
        }
        catch (Exception e)
        {
            if (batch.Count == 1)
            {
                _logger.LogWarning(PerformanceEvents.TokenWriteFailed, e, "Writing token entries failed");
            }

            throw;
        }
    }

    /// <summary>
    /// Other providers: the new rows through one SaveChanges (one transaction, as few commands as the provider allows;
    /// EF Core inserts the new authorizations before the entries that name them).
    /// </summary>
    private static async Task SaveInsertsAsync(ApplicationDbContext db, IReadOnlyList<TokenRow> rows, IReadOnlyList<AuthorizationRow> authorizations)
    {
        var owners = rows.Select(row => (row.Token.Application, row.Token.Authorization)).ToList();
        var clients = authorizations.Select(row => row.Authorization.Application).ToList();
        try
        {
            foreach (var row in authorizations)
            {
                row.Authorization.Application = null;
                db.Add(row.Authorization).Property(BatchingTokenStore.ApplicationIdProperty).CurrentValue = row.ApplicationId;
            }

            foreach (var row in rows)
            {
                // Only the token row: its client and authorization exist already and are referenced by id.
                row.Token.Application = null;
                row.Token.Authorization = null;
                BatchingTokenStore.AddWithOwnerIds(db, row);
            }

            await db.SaveChangesAsync();
        }
        finally
        {
            // The entities go back to their requests, free to be attached to the requests' own contexts.
            db.ChangeTracker.Clear();
            for (var i = 0; i < rows.Count; i++)
            {
                (rows[i].Token.Application, rows[i].Token.Authorization) = owners[i];
            }

            for (var i = 0; i < authorizations.Count; i++)
            {
                authorizations[i].Authorization.Application = clients[i];
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer;
    }

    private sealed record PendingWrite(TokenChanges Changes, CancellationToken RequestAborted)
    {
        // Each waiting request goes on on the thread pool, not on the writer's thread: finishing a batch's requests
        // there one after another measured about 20% fewer tokens a second (benchmark history, seventeenth round:
        // tests/IdentityServer.Benchmarks/HISTORY.md).
        public TaskCompletionSource<bool> Written { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

public static class PerformanceEvents
{
    public static readonly EventId TokenWriteFailed = new(8001, nameof(TokenWriteFailed));
}
