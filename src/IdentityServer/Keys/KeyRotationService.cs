using IdentityServer.Telemetry;
using Microsoft.Extensions.Options;

namespace IdentityServer.Keys;

/// <summary>Every <see cref="KeysOptions.CheckInterval"/>: picks up keys other instances made, rotates when due, removes expired keys.</summary>
public sealed class KeyRotationService(KeyRing keys, IOptions<KeysOptions> options, TimeProvider clock, ServerMetrics metrics, ILogger<KeyRotationService> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var observed = metrics.ObserveKeyRotation(keys);
        using var timer = new PeriodicTimer(options.Value.CheckInterval, clock);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await keys.RefreshAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // The database may be down for a moment; the keys in memory keep working, and the next tick retries.
                    logger.LogWarning(KeyEvents.RefreshFailed, e, "Checking the signing keys failed; retrying in {Interval}", options.Value.CheckInterval);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down.
        }
    }
}
