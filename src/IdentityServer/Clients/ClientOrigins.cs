using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Clients;

/// <summary>
/// The origins (scheme, host, port) of every registered redirect URI: the browser apps allowed to call our endpoints
/// cross-origin. Kept in memory and read again from the database every <see cref="Lifetime"/> (other instances' changes),
/// and at once after a change on this instance (<see cref="Invalidate"/>).
/// </summary>
/// <remarks>
/// Built for many clients (open dynamic registration): reads run one at a time, each serving every request that
/// waits for it, however many clients change meanwhile; a copy past its lifetime keeps answering while the next one is
/// read (up to twice the lifetime); and only the redirect URIs are read, not whole clients.
/// </remarks>
public sealed class ClientOrigins(IServiceScopeFactory scopes, TimeProvider clock, ILogger<ClientOrigins> logger)
{
    private static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _reading = new(1, 1);
    private Snapshot? _snapshot;

    // Counts this instance's changes: a copy read before a change is not used after it.
    private long _changes;

    public async ValueTask<bool> IsAllowedAsync(string origin, CancellationToken ct)
    {
        var snapshot = Volatile.Read(ref _snapshot);
        var age = snapshot is null ? TimeSpan.MaxValue : clock.GetUtcNow() - snapshot.ReadAt;
        if (snapshot is not null && snapshot.Changes == Interlocked.Read(ref _changes) && age <= Lifetime * 2)
        {
            if (age > Lifetime && _reading.Wait(0))
            {
                // Read again in the background (unless a read is under way); this copy answers meanwhile.
                _ = Task.Run(() => ReadHoldingTheGateAsync(snapshot.Changes, clock.GetUtcNow() - Lifetime));
            }

            return snapshot.Origins.Contains(origin);
        }

        // None yet, one too old, or a client changed here since: wait for a read that began after the change (counted
        // before waiting, so that one read serves everyone who waited for it, whatever changed meanwhile).
        var needed = Interlocked.Read(ref _changes);
        var readAfter = clock.GetUtcNow() - Lifetime * 2;
        await _reading.WaitAsync(ct);
        return (await ReadHoldingTheGateAsync(needed, readAfter)).Origins.Contains(origin);
    }

    public void Invalidate() => Interlocked.Increment(ref _changes);

    /// <summary>
    /// With the gate held (and released here): the copy kept, if it began after <paramref name="changes"/> changes and
    /// was read after <paramref name="readAfter"/> (another waiter's read), else a new read. A read that fails answers
    /// with the kept copy if it is recent enough, else with no origins at all (and is not kept), so a removed client's
    /// origin is never allowed for want of a read.
    /// </summary>
    private async Task<Snapshot> ReadHoldingTheGateAsync(long changes, DateTimeOffset readAfter)
    {
        try
        {
            if (Volatile.Read(ref _snapshot) is { } kept && kept.Changes >= changes && kept.ReadAt >= readAfter)
            {
                return kept;
            }

            var startedAt = Interlocked.Read(ref _changes);
            try
            {
                var snapshot = new Snapshot(await LoadAsync(), clock.GetUtcNow(), startedAt);
                Volatile.Write(ref _snapshot, snapshot);
                return snapshot;
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "The origins of the clients' redirect URIs could not be read");
                return Volatile.Read(ref _snapshot) is { } previous && previous.Changes >= changes && previous.ReadAt >= readAfter - Lifetime
                    ? previous
                    : new Snapshot([], clock.GetUtcNow(), startedAt);
            }
        }
        finally
        {
            _reading.Release();
        }
    }

    private async Task<HashSet<string>> LoadAsync()
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var origins = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        // OpenIddict stores each client's redirect URIs as a JSON array.
        await foreach (var redirectUris in db.Set<OpenIddictEntityFrameworkCoreApplication>().AsNoTracking()
            .Where(a => a.RedirectUris != null).Select(a => a.RedirectUris!).AsAsyncEnumerable())
        {
            foreach (var uri in ParseArray(redirectUris))
            {
                if (Uri.TryCreate(uri, UriKind.Absolute, out var parsed) && parsed.Scheme is "http" or "https")
                {
                    origins.Add(parsed.GetLeftPart(UriPartial.Authority));
                }
            }
        }

        return origins;
    }

    private static string[] ParseArray(string json)
    {
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize<string?[]>(json)?.OfType<string>().ToArray() ?? [];
        }
        catch (System.Text.Json.JsonException)
        {
            return [];
        }
    }

    private sealed record Snapshot(HashSet<string> Origins, DateTimeOffset ReadAt, long Changes);
}
