using System.Threading.Channels;

namespace IdentityServer.Data;

/// <summary>
/// The wait of a background sender that works through rows due at given times (logout tokens, emails): until it is
/// woken (new work committed, a sender freed), the next row is due, or a poll interval has passed (for rows another
/// instance left behind when it stopped or crashed).
/// </summary>
public sealed class DueWork(TimeProvider clock)
{
    /// <summary>How often the table is read without a wake-up.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMinutes(1);

    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public void Wake() => _wake.Writer.TryWrite(true);

    /// <summary>
    /// Until stopped: works through what is due (<paramref name="workDue"/> returns when the next row not yet due is
    /// due, or null), then waits. A failed look (the database away) is reported and made again after the wait: the rows
    /// stay, and the next look finds them.
    /// </summary>
    public async Task RunAsync(Func<CancellationToken, Task<DateTime?>> workDue, Action<Exception> reportFailure, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            DateTime? next = null;
            try
            {
                next = await workDue(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                reportFailure(e);
            }

            await WaitAsync(next, stoppingToken);
        }
    }

    private async Task WaitAsync(DateTime? nextDue, CancellationToken stoppingToken)
    {
        var delay = PollInterval;
        if (nextDue is { } due)
        {
            var untilDue = due - clock.GetUtcNow().UtcDateTime;
            delay = untilDue < TimeSpan.Zero ? TimeSpan.Zero : untilDue < delay ? untilDue : delay;
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        await Task.WhenAny(_wake.Reader.WaitToReadAsync(stop.Token).AsTask(), Task.Delay(delay, clock, stop.Token));
        await stop.CancelAsync();
        _wake.Reader.TryRead(out _);
    }

    /// <summary>When to try again after attempt <paramref name="attempt"/> failed: <paramref name="firstDelay"/>, doubled for each attempt made since the first.</summary>
    public DateTime RetryAt(int attempt, TimeSpan firstDelay) => clock.GetUtcNow().UtcDateTime + firstDelay * Math.Pow(2, attempt - 1);
}
