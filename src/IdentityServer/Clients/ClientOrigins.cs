using OpenIddict.Abstractions;

namespace IdentityServer.Clients;

/// <summary>
/// The origins (scheme, host, port) of every registered redirect URI: the browser apps allowed to call our
/// endpoints cross-origin. Kept in memory for a short while; <see cref="Invalidate"/> after a client changes.
/// </summary>
public sealed class ClientOrigins(IServiceScopeFactory scopes, TimeProvider clock)
{
    private static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(30);
    private Snapshot? _snapshot;

    // Counts invalidations: origins read before a client changed must not be kept after it.
    private long _invalidations;

    public async ValueTask<bool> IsAllowedAsync(string origin, CancellationToken ct)
    {
        var snapshot = Volatile.Read(ref _snapshot);
        if (snapshot is null || clock.GetUtcNow() - snapshot.LoadedAt > Lifetime)
        {
            var invalidations = Interlocked.Read(ref _invalidations);
            snapshot = new Snapshot(await LoadAsync(ct), clock.GetUtcNow());
            Volatile.Write(ref _snapshot, snapshot);
            if (Interlocked.Read(ref _invalidations) != invalidations)
            {
                // A client changed while this was reading: what it read answers this request only.
                Interlocked.CompareExchange(ref _snapshot, null, snapshot);
            }
        }

        return snapshot.Origins.Contains(origin);
    }

    public void Invalidate()
    {
        Interlocked.Increment(ref _invalidations);
        Volatile.Write(ref _snapshot, null);
    }

    private async Task<HashSet<string>> LoadAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var origins = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        await foreach (var application in applications.ListAsync(count: null, offset: null, ct))
        {
            foreach (var uri in await applications.GetRedirectUrisAsync(application, ct))
            {
                if (Uri.TryCreate(uri, UriKind.Absolute, out var parsed) && parsed.Scheme is "http" or "https")
                {
                    origins.Add(parsed.GetLeftPart(UriPartial.Authority));
                }
            }
        }

        return origins;
    }

    private sealed record Snapshot(HashSet<string> Origins, DateTimeOffset LoadedAt);
}
