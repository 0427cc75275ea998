using System.Runtime.InteropServices;
using Microsoft.Extensions.Options;

namespace IdentityServer.Performance;

/// <summary>
/// Hands the C heap's free memory back to the operating system every <see cref="PerformanceOptions.NativeHeapTrimInterval"/>
/// (glibc's <c>malloc_trim</c>). The JIT compiling in the background, OpenSSL and SQLite free what they allocate, but
/// glibc keeps the freed pages of its per-thread arenas resident unless they sit at an arena's end: under load one
/// arena held 18 MB that way (benchmark history, thirteenth round: tests/IdentityServer.Benchmarks/HISTORY.md). Only
/// on Linux with glibc.
/// </summary>
public sealed class NativeHeapTrimmer(IOptions<PerformanceOptions> options, ILogger<NativeHeapTrimmer> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.NativeHeapTrimInterval;
        if (interval <= TimeSpan.Zero || !OperatingSystem.IsLinux())
        {
            return;
        }

        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                MallocTrim(0);
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // musl (Alpine) has no malloc_trim: nothing to trim there.
            logger.LogDebug(e, "The C library has no malloc_trim; the native heap is not trimmed.");
        }
    }

    // glibc's soname: present on every glibc system, development packages or not; musl has no malloc_trim.
    [DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}
