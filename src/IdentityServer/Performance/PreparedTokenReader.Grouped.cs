using System.Data.Common;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

public sealed partial class PreparedTokenReader
{
    /// <summary>
    /// On PostgreSQL, lookups by id (or by reference id) that are waiting at the same moment go to the database
    /// together, as one prepared statement for all their keys (<c>WHERE "Id" = ANY(@value)</c>). One round trip per
    /// lookup cost the server more than the query (the socket's send and receive, the wake-up after the answer) and
    /// PostgreSQL as much again: under introspection load about 40% of the machine's CPU went to the lookups. Workers
    /// take everything queued when they are free, so a lone lookup still goes at once, and each lookup runs after its
    /// request asked: it reads what was committed by then, as a lookup of its own would.
    /// </summary>
    private sealed class GroupedLookups : IAsyncDisposable
    {
        /// <summary>Keys per statement, at most; more wait for the next.</summary>
        private const int GroupLimit = 64;

        private readonly Channel<PendingLookup> _queue = Channel.CreateUnbounded<PendingLookup>();
        private readonly PreparedTokenReader _reader;
        private readonly IdleSessions _idle;
        private readonly Key _key;
        private readonly Task[] _workers;

        public GroupedLookups(PreparedTokenReader reader, IdleSessions idle, Key key)
        {
            _reader = reader;
            _idle = idle;
            _key = key;

            // One group in the database while the next gathers; both keys' workers together within the connections the
            // reader keeps (but one each at least).
            var workers = Math.Clamp(Environment.ProcessorCount, 1, Math.Max(1, idle.Limit / 2));
            _workers = [.. Enumerable.Range(0, workers).Select(_ => Task.Run(RunWorkerAsync))];
        }

        public Task<(Row<OpenIddictEntityFrameworkCoreToken>?, Row<OpenIddictEntityFrameworkCoreAuthorization>?)> FindAsync(string key, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var pending = new PendingLookup(key, cancellationToken);
            if (!_queue.Writer.TryWrite(pending))
            {
                throw new ObjectDisposedException(nameof(PreparedTokenReader));
            }

            return pending.Found.Task.WaitAsync(cancellationToken);
        }

        private async Task RunWorkerAsync()
        {
            // Waiters by key: one token presented by several requests at once is read once, into instances for each.
            var group = new Dictionary<string, List<PendingLookup>>(StringComparer.Ordinal);
            while (await _queue.Reader.WaitToReadAsync())
            {
                while (group.Count < GroupLimit && _queue.Reader.TryRead(out var pending))
                {
                    if (pending.RequestAborted.IsCancellationRequested)
                    {
                        // Its request stopped waiting (its client went away): nothing to read for it.
                        pending.Found.TrySetCanceled(pending.RequestAborted);
                        continue;
                    }

                    (CollectionsMarshal.GetValueRefOrAddDefault(group, pending.Key, out _) ??= []).Add(pending);
                }

                if (group.Count == 0)
                {
                    continue;
                }

                try
                {
                    await ReadGroupAsync(group);
                }
                catch (Exception e)
                {
                    // Completing a lookup twice does nothing: those already answered keep their answer.
                    foreach (var pending in group.Values.SelectMany(waiters => waiters))
                    {
                        pending.Found.TrySetException(e);
                    }
                }

                group.Clear();
            }
        }

        /// <summary>
        /// On a connection kept open, then once more on a new one if that failed: a connection left idle may have been
        /// closed by the server meanwhile (a restart, a failover), and the group's lookups should not all fail for it.
        /// </summary>
        private async Task ReadGroupAsync(Dictionary<string, List<PendingLookup>> group)
        {
            if (_idle.Bag.TryTake(out var kept) && await TryReadGroupAsync(kept, group, retryOnDatabaseError: true))
            {
                return;
            }

            var session = await Session.OpenAsync(_idle.ConnectionString, _idle.Layout, CancellationToken.None);
            await TryReadGroupAsync(session, group, retryOnDatabaseError: false);
        }

        /// <summary>
        /// Reads the group on the session, then gives the session back, to be kept if the read worked; false for a
        /// database error left to the caller to retry.
        /// </summary>
        private async Task<bool> TryReadGroupAsync(Session session, Dictionary<string, List<PendingLookup>> group, bool retryOnDatabaseError)
        {
            var healthy = false;
            try
            {
                await ReadGroupAsync(session, group);
                healthy = true;
                return true;
            }
            catch (DbException) when (retryOnDatabaseError)
            {
                return false;
            }
            finally
            {
                await _reader.ReturnAsync(_idle, session, healthy);
            }
        }

        private async Task ReadGroupAsync(Session session, Dictionary<string, List<PendingLookup>> group)
        {
            var command = _key == Key.Id ? session.ById : session.ByReferenceId;
            command.Parameters[0].Value = group.Keys.ToArray();
            await using (var reader = await command.ExecuteReaderAsync())
            {
                await _idle.Layout.SkipToRowsAsync(reader);
                var keyOrdinal = Layout.KeyOrdinal(_key);
                while (await reader.ReadAsync())
                {
                    // Reference ids are unique (a unique index), like ids: one row per key.
                    if (group.TryGetValue(reader.GetString(keyOrdinal), out var waiters))
                    {
                        foreach (var pending in waiters)
                        {
                            pending.Found.TrySetResult((_idle.Layout.ReadToken(reader), _idle.Layout.ReadAuthorization(reader)));
                        }
                    }
                }
            }

            foreach (var notFound in group.Values.SelectMany(waiters => waiters))
            {
                notFound.Found.TrySetResult((null, null));
            }
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            await Task.WhenAll(_workers);
        }

        private sealed record PendingLookup(string Key, CancellationToken RequestAborted)
        {
            public TaskCompletionSource<(Row<OpenIddictEntityFrameworkCoreToken>?, Row<OpenIddictEntityFrameworkCoreAuthorization>?)> Found { get; } =
                new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }
}
