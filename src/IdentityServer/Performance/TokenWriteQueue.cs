using System.Diagnostics;
using System.Threading.Channels;
using IdentityServer.Data;
using IdentityServer.Telemetry;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

/// <summary>
/// Group commit for new token entries. Requests hand their new token entry to one writer and wait; the writer takes
/// every entry waiting at that moment and inserts them in one transaction, then answers each request once its row is
/// committed (or with the error, after retrying a failed batch one entry at a time so one bad entry fails alone).
/// So concurrent token requests never collide on SQLite's single write lock, a burst costs one commit (one fsync)
/// instead of one per token, and nothing is acknowledged before it is durable. On PostgreSQL and SQL Server the same
/// batching saves round trips and commits.
/// </summary>
public sealed class TokenWriteQueue : IAsyncDisposable
{
    private readonly Channel<PendingToken> _queue = Channel.CreateUnbounded<PendingToken>(new UnboundedChannelOptions { SingleReader = true });
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
        _writer = Task.Run(WriteAsync);
    }

    /// <summary>Completes when the entry is committed (the token's <c>Id</c> is then set).</summary>
    public Task InsertAsync(OpenIddictEntityFrameworkCoreToken token, string? applicationId, string? authorizationId, CancellationToken cancellationToken)
    {
        var pending = new PendingToken(token, applicationId, authorizationId);
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new InvalidOperationException("The server is shutting down; the token entry was not written.");
        }

        // Once queued the entry is written whatever happens to the request; the request just stops waiting.
        return pending.Committed.Task.WaitAsync(cancellationToken);
    }

    private async Task WriteAsync()
    {
        var batch = new List<PendingToken>();
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (batch.Count < _options.Value.TokenWriteBatchLimit && _queue.Reader.TryRead(out var pending))
            {
                batch.Add(pending);
            }

            try
            {
                await InsertBatchAsync(batch);
                batch.ForEach(p => p.Committed.TrySetResult());
            }
            catch (Exception) when (batch.Count > 1)
            {
                // One bad entry (say, its client deleted meanwhile) must not fail the others: one at a time.
                foreach (var pending in batch)
                {
                    try
                    {
                        await InsertBatchAsync([pending]);
                        pending.Committed.TrySetResult();
                    }
                    catch (Exception e)
                    {
                        pending.Committed.TrySetException(e);
                    }
                }
            }
            catch (Exception e)
            {
                batch.ForEach(p => p.Committed.TrySetException(e));
            }

            batch.Clear();
        }
    }

    private async Task InsertBatchAsync(IReadOnlyList<PendingToken> batch)
    {
        var started = Stopwatch.GetTimestamp();
        var committed = false;
        try
        {
            await InsertAsync(batch);
            committed = true;
        }
        finally
        {
            _metrics.TokenEntriesWritten(batch.Count, Stopwatch.GetElapsedTime(started).TotalSeconds, committed);
        }
    }

    private async Task InsertAsync(IReadOnlyList<PendingToken> batch)
    {
        await using var scope = _scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        try
        {
            if (TokenRowInserter.Supports(db))
            {
                await TokenRowInserter.InsertAsync(db, [.. batch.Select(p => (p.Token, p.ApplicationId, p.AuthorizationId))], CancellationToken.None);
                return;
            }

            foreach (var pending in batch)
            {
                // Only the token row: its client and authorization exist already and are referenced by id.
                pending.Token.Application = null;
                pending.Token.Authorization = null;
                BatchingTokenStore.AddWithOwnerIds(db, pending.Token, pending.ApplicationId, pending.AuthorizationId);
            }

            // One SaveChanges: one transaction, one commit, the inserts batched into as few commands as the provider allows.
            await db.SaveChangesAsync();
        }
        catch (Exception e)
        {
            if (batch.Count == 1)
            {
                _logger.LogWarning(PerformanceEvents.TokenWriteFailed, e, "Writing a token entry failed");
            }

            throw;
        }
        finally
        {
            // The entities go back to their requests, free to be attached to the requests' own contexts.
            db.ChangeTracker.Clear();
            foreach (var pending in batch)
            {
                pending.Token.Application = pending.Application;
                pending.Token.Authorization = pending.Authorization;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer;
    }

    private sealed record PendingToken(OpenIddictEntityFrameworkCoreToken Token, string? ApplicationId, string? AuthorizationId)
    {
        public OpenIddictEntityFrameworkCoreApplication? Application { get; } = Token.Application;

        public OpenIddictEntityFrameworkCoreAuthorization? Authorization { get; } = Token.Authorization;

        public TaskCompletionSource Committed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

public static class PerformanceEvents
{
    public static readonly EventId TokenWriteFailed = new(8001, nameof(TokenWriteFailed));
}
