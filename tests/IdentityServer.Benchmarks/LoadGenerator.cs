using System.Diagnostics;

namespace IdentityServer.Benchmarks;

/// <summary>One client's repeated operation (one or more HTTP requests); per-worker state lives in the implementation.</summary>
public interface IWorker : IDisposable
{
    /// <summary>Runs the operation once; returns null on success, or what went wrong.</summary>
    Task<string?> RunOnceAsync(CancellationToken cancellationToken);
}

public abstract class Scenario
{
    public abstract string Name { get; }

    /// <summary>HTTP requests one operation makes (a sign-in is an authorize and a token request).</summary>
    public virtual int RequestsPerOperation => 1;

    /// <summary>The target, as a multiple of the RS256 signing ceiling (null: no target).</summary>
    public abstract double? TargetRatio { get; }

    /// <summary>The p99 latency the target also requires, in milliseconds (null: none).</summary>
    public virtual double? TargetP99Milliseconds => null;

    public abstract Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken);
}

public sealed record ScenarioResult(
    string Name,
    double OperationsPerSecond,
    double RequestsPerSecond,
    double P50Milliseconds,
    double P99Milliseconds,
    long Operations,
    long Errors,
    long PeakWorkingSetBytes,
    double CeilingPerSecond,
    double ServerCpuMillisecondsPerOperation,
    double LoadGeneratorCpuMillisecondsPerOperation,
    double MachineBusyMillisecondsPerOperation,
    double? CpuRatioToSignature,
    double? RatioToCeiling,
    double? TargetRatio,
    double? TargetP99Milliseconds,
    string? FirstError)
{
    /// <summary>Null without a target; else whether the ratio, and the p99 where the target names one, are met.</summary>
    public bool? MeetsTarget => TargetRatio is { } ratio
        ? RatioToCeiling >= ratio && (TargetP99Milliseconds is not { } p99 || P99Milliseconds < p99)
        : null;
}

/// <summary>
/// A closed-loop load generator: <c>concurrency</c> workers, each sending its next operation as soon as the last
/// one answered, over keep-alive connections. Warms up first; then counts operations that complete within the
/// measured window, with their latency, and samples the server's resident set meanwhile.
/// </summary>
public static class LoadGenerator
{
    public static async Task<ScenarioResult> RunAsync(Scenario scenario, BenchmarkClient client, ServerUnderTest server,
        int concurrency, TimeSpan warmup, TimeSpan duration, double ceiling, double signatureCpuMilliseconds)
    {
        using var stop = new CancellationTokenSource();
        var workers = new IWorker[concurrency];
        for (var i = 0; i < concurrency; i++)
        {
            workers[i] = await scenario.CreateWorkerAsync(client, stop.Token);
        }

        var frequency = (double)Stopwatch.Frequency;
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + (long)(warmup.TotalSeconds * frequency);
        var measureTo = measureFrom + (long)(duration.TotalSeconds * frequency);
        var latencies = new List<long>[concurrency];
        var errors = new long[concurrency];
        string? firstError = null;

        var peak = 0L;
        TimeSpan? cpuFrom = null;
        var cpuTo = TimeSpan.Zero;
        var self = Process.GetCurrentProcess();
        var generatorFrom = TimeSpan.Zero;
        var generatorTo = TimeSpan.Zero;
        var machineFrom = TimeSpan.Zero;
        var machineTo = TimeSpan.Zero;
        var sampler = Task.Run(async () =>
        {
            while (Stopwatch.GetTimestamp() < measureTo)
            {
                if (Stopwatch.GetTimestamp() >= measureFrom)
                {
                    if (cpuFrom is null)
                    {
                        cpuFrom = server.CpuTime();
                        self.Refresh();
                        generatorFrom = self.TotalProcessorTime;
                        machineFrom = MachineBusyTime();
                    }

                    peak = Math.Max(peak, server.WorkingSet());
                }

                await Task.Delay(50);
            }

            cpuTo = server.CpuTime();
            self.Refresh();
            generatorTo = self.TotalProcessorTime;
            machineTo = MachineBusyTime();
        });

        var tasks = new Task[concurrency];
        for (var i = 0; i < concurrency; i++)
        {
            var index = i;
            latencies[index] = new List<long>(16384);
            tasks[index] = Task.Run(async () =>
            {
                var worker = workers[index];
                while (true)
                {
                    var began = Stopwatch.GetTimestamp();
                    if (began >= measureTo)
                    {
                        return;
                    }

                    string? error;
                    try
                    {
                        error = await worker.RunOnceAsync(stop.Token);
                    }
                    catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException or System.Net.Sockets.SocketException)
                    {
                        error = $"{e.GetType().Name}: {e.Message}";
                    }

                    var ended = Stopwatch.GetTimestamp();
                    if (began >= measureFrom && ended <= measureTo)
                    {
                        latencies[index].Add(ended - began);
                        if (error is not null)
                        {
                            errors[index]++;
                            Interlocked.CompareExchange(ref firstError, error, null);
                        }
                    }
                }
            });
        }

        await Task.WhenAll(tasks);
        await sampler;
        foreach (var worker in workers)
        {
            worker.Dispose();
        }

        var all = latencies.SelectMany(l => l).ToArray();
        Array.Sort(all);
        var operations = all.LongLength;
        var seconds = duration.TotalSeconds;
        var opsPerSecond = operations / seconds;
        double PerOperation(TimeSpan used) => operations == 0 ? 0 : used.TotalMilliseconds / operations;
        var cpuPerOperation = PerOperation(cpuTo - (cpuFrom ?? cpuTo));
        double Percentile(double p) => all.Length == 0 ? 0 : all[Math.Min(all.Length - 1, (int)Math.Ceiling(p * all.Length) - 1)] * 1000 / frequency;
        return new ScenarioResult(
            scenario.Name,
            opsPerSecond,
            opsPerSecond * scenario.RequestsPerOperation,
            Percentile(0.50),
            Percentile(0.99),
            operations,
            errors.Sum(),
            peak,
            ceiling,
            cpuPerOperation,
            PerOperation(generatorTo - generatorFrom),
            PerOperation(machineTo - machineFrom),
            cpuPerOperation > 0 ? signatureCpuMilliseconds / cpuPerOperation : null,
            ceiling > 0 ? opsPerSecond / ceiling : null,
            scenario.TargetRatio,
            scenario.TargetP99Milliseconds,
            firstError);
    }

    /// <summary>CPU time all cores have spent busy since boot (the first line of /proc/stat less idle and iowait).</summary>
    private static TimeSpan MachineBusyTime()
    {
        try
        {
            var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // cpu user nice system idle iowait irq softirq steal ..., in clock ticks of 1/100 s.
            var ticks = fields.Skip(1).Take(8).Select(long.Parse).ToArray();
            return TimeSpan.FromSeconds((ticks.Sum() - ticks[3] - ticks[4]) / 100.0);
        }
        catch (IOException)
        {
            return TimeSpan.Zero;
        }
    }
}
