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
/// Built for many clients (open dynamic registration): one read at a time, however many requests need it; a copy
/// past its lifetime keeps answering while the next one is read; and only the redirect URIs are read, not whole clients.
/// </remarks>
public sealed class ClientOrigins(IServiceScopeFactory scopes, TimeProvider clock, ILogger<ClientOrigins> logger)
{
    private static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(30);

    private readonly Lock _gate = new();
    private Snapshot? _snapshot;
    private Task<Snapshot>? _reading;
    private long _readingFor = -1;

    // Counts this instance's changes: a copy read before a change is not used after it.
    private long _changes;

    public async ValueTask<bool> IsAllowedAsync(string origin, CancellationToken ct)
    {
        var snapshot = Volatile.Read(ref _snapshot);
        if (snapshot is not null && snapshot.Changes == Interlocked.Read(ref _changes))
        {
            if (clock.GetUtcNow() - snapshot.ReadAt > Lifetime)
            {
                _ = Read(); // answered from this copy meanwhile
            }

            return snapshot.Origins.Contains(origin);
        }

        // None yet, or a client changed here since: wait for a read that began after the change.
        return (await Read().WaitAsync(ct)).Origins.Contains(origin);
    }

    public void Invalidate() => Interlocked.Increment(ref _changes);

    /// <summary>The read under way that began after the latest change, or a new one.</summary>
    private Task<Snapshot> Read()
    {
        lock (_gate)
        {
            var changes = Interlocked.Read(ref _changes);
            if (_reading is { IsCompleted: false } reading && _readingFor == changes)
            {
                return reading;
            }

            _readingFor = changes;
            return _reading = Task.Run(() => ReadAndKeepAsync(changes));
        }
    }

    private async Task<Snapshot> ReadAndKeepAsync(long changes)
    {
        Snapshot snapshot;
        try
        {
            snapshot = new Snapshot(await LoadAsync(), clock.GetUtcNow(), changes);
        }
        catch (Exception e) when (Volatile.Read(ref _snapshot) is { } previous)
        {
            // A database that cannot be read for a moment: the last copy answers until a read succeeds.
            logger.LogWarning(e, "The origins of the clients' redirect URIs could not be read again; the last copy stays in use");
            return previous;
        }

        lock (_gate)
        {
            if (_snapshot is null || _snapshot.Changes <= changes)
            {
                _snapshot = snapshot;
            }
        }

        return snapshot;
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
