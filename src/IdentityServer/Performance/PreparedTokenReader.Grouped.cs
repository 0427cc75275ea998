using System.Threading.Channels;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Performance;

public sealed partial class PreparedTokenReader
{
    /// <summary>
    /// On PostgreSQL, lookups by id (or reference id) that are waiting at the same moment go to the database together, as one prepared
    /// statement for all their ids (<c>WHERE id = ANY(@value)</c>). One lookup per round trip cost the server more than
    /// its query (the socket's send and receive, the wake-up after the answer) and PostgreSQL as much again per
    /// statement: under introspection load about 40% of the machine's CPU went to the lookups. A few workers take
    /// everything queued when they are free, so a lone lookup still goes at once, and each runs after its request
    /// asked: it reads what is committed by then, as a lookup of its own would.
    /// </summary>
    private sealed class GroupedLookups : IAsyncDisposable
    {
        /// <summary>Ids per statement, at most; more wait for the next.</summary>
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

            // One group in the database while the next gathers; no more than the connections the reader may keep.
            _workers = [.. Enumerable.Range(0, Math.Clamp(Environment.ProcessorCount, 1, idle.Limit)).Select(_ => Task.Run(RunWorkerAsync))];
        }

        public Task<(Row<OpenIddictEntityFrameworkCoreToken>?, Row<OpenIddictEntityFrameworkCoreAuthorization>?)> FindAsync(string id, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var pending = new PendingLookup(id);
            if (!_queue.Writer.TryWrite(pending))
            {
                throw new ObjectDisposedException(nameof(PreparedTokenReader));
            }

            return pending.Found.Task.WaitAsync(cancellationToken);
        }

        private async Task RunWorkerAsync()
        {
            var group = new Dictionary<string, PendingLookup>(StringComparer.Ordinal);

            // The same id twice (one token presented by two requests at once) waits for the next group: each request
            // gets instances of its own.
            var again = new List<PendingLookup>();
            while (again.Count > 0 || await _queue.Reader.WaitToReadAsync())
            {
                PendingLookup[] waited = [.. again];
                again.Clear();
                foreach (var pending in waited)
                {
                    if (!group.TryAdd(pending.Id, pending))
                    {
                        again.Add(pending);
                    }
                }

                while (group.Count < GroupLimit && _queue.Reader.TryRead(out var pending))
                {
                    if (!group.TryAdd(pending.Id, pending))
                    {
                        again.Add(pending);
                    }
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
                    foreach (var pending in group.Values)
                    {
                        pending.Found.TrySetException(e);
                    }
                }

                group.Clear();
            }
        }

        private async Task ReadGroupAsync(Dictionary<string, PendingLookup> group)
        {
            var session = await RentAsync(_idle, CancellationToken.None);
            var healthy = false;
            try
            {
                var command = _key == Key.Id ? session.ById : session.ByReferenceId;
                command.Parameters[0].Value = group.Keys.ToArray();
                await using (var reader = await command.ExecuteReaderAsync())
                {
                    var keyOrdinal = Layout.KeyOrdinal(_key);
                    while (await reader.ReadAsync())
                    {
                        // Reference ids are unique (a unique index); the first row of a key answers its lookup.
                        if (group.Remove(reader.GetString(keyOrdinal), out var pending))
                        {
                            pending.Found.TrySetResult((_idle.Layout.ReadToken(reader), _idle.Layout.ReadAuthorization(reader)));
                        }
                    }
                }

                foreach (var notFound in group.Values)
                {
                    notFound.Found.TrySetResult((null, null));
                }

                healthy = true;
            }
            finally
            {
                await _reader.ReturnAsync(_idle, session, healthy);
            }
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            await Task.WhenAll(_workers);
        }

        private sealed record PendingLookup(string Id)
        {
            public TaskCompletionSource<(Row<OpenIddictEntityFrameworkCoreToken>?, Row<OpenIddictEntityFrameworkCoreAuthorization>?)> Found { get; } =
                new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }
}
