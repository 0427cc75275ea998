using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using IdentityServer.Benchmarks;
using IdentityServer.Tests.Infrastructure;

// dotnet run -c Release --project tests/IdentityServer.Benchmarks -- [--database sqlite|postgres] [--duration 10]
//     [--concurrency 32] [--warmup 10] [--scenarios client_credentials,refresh_token,...] [--output benchmark-results]
//     [--set Section:Key=value ...]   (extra server settings, e.g. --set Performance:EntityCacheLifetime=0)
//     [--no-ready-to-run]             (run the plain build output instead of the ReadyToRun publish)
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
var options = BenchmarkOptions.Parse(args);
if (options is null)
{
    Console.Error.WriteLine(BenchmarkOptions.Usage);
    return 2;
}

#if DEBUG
Console.Error.WriteLine("warning: a Debug build; run the benchmark with -c Release for meaningful numbers.");
#endif

var seed = new BenchmarkSeed();
await using var database = await BenchmarkDatabase.CreateAsync(options.Database);
var settings = new Dictionary<string, string>(seed.Settings())
{
    ["ASPNETCORE_ENVIRONMENT"] = "Production",
    ["Logging:LogLevel:Default"] = "Warning",
    ["Hosting:TlsTerminatedByProxy"] = "true",
    ["Hosting:KnownProxies:0"] = "127.0.0.1",
    // The benchmark measures the server, not the per-client token rate limit (one client makes all the requests).
    ["RateLimiting:PerClient:PermitLimit"] = "1000000",
    ["Database:Provider"] = database.Provider,
    ["ConnectionStrings:IdentityServer"] = database.ConnectionString,
    // As README's "Production storage" recommends on SQLite and PostgreSQL (SQL Server's client needs ICU): no culture data.
    ["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] = "true",
};
foreach (var (key, value) in options.Settings)
{
    settings[key] = value;
}

if (options.ReadyToRun)
{
    Console.Write("Publishing the server (Release, ReadyToRun) ... ");
    await ServerUnderTest.PublishReadyToRunAsync();
    Console.WriteLine("done");
}

Console.WriteLine($"Server: {ServerUnderTest.AssemblyPath}");
Console.WriteLine($"Database: {database.Provider}, {options.Concurrency} connections, {options.Warmup.TotalSeconds:0} s warm-up and {options.Duration.TotalSeconds:0} s per scenario");

var results = new List<ScenarioResult>();
long peakOverall;
double ceiling;
double signatureCpu;
await using (var server = ServerUnderTest.Start(settings))
{
    using var client = new BenchmarkClient(server.BaseAddress, options.Concurrency, seed);
    await WaitUntilHealthyAsync(server, client.Http);
    await client.SignInAsync(CancellationToken.None);

    // Measured with the server started and idle, and again right before each scenario: on a shared machine the
    // cores' speed varies over a run, and each scenario is compared with the ceiling of its own moment.
    Console.Write("RS256 signing ceiling ... ");
    (ceiling, signatureCpu) = SigningCeiling.Measure(TimeSpan.FromSeconds(3));
    Console.WriteLine($"{ceiling:0} signatures/s on {Environment.ProcessorCount} threads, {signatureCpu:0.000} ms of CPU each");

    Scenario[] scenarios =
    [
        new GetScenario("discovery", ".well-known/openid-configuration", 5),
        new GetScenario("jwks", ".well-known/jwks", 5),
        new ClientCredentialsScenario(),
        new IntrospectionScenario(),
        new RefreshScenario(),
        new SignInScenario(),
    ];
    foreach (var scenario in scenarios.Where(s => options.Scenarios is null || options.Scenarios.Contains(s.Name.Split(' ')[0])))
    {
        var (moment, momentCpu) = SigningCeiling.Measure(TimeSpan.FromSeconds(2));
        Console.Write($"{scenario.Name} (ceiling now {moment:0}/s) ... ");
        var result = await LoadGenerator.RunAsync(scenario, client, server, options.Concurrency, options.Warmup, options.Duration, moment, momentCpu);
        results.Add(result);
        Console.WriteLine($"{result.OperationsPerSecond:0}/s, {result.ServerCpuMillisecondsPerOperation:0.000} CPU ms/op (load generator {result.LoadGeneratorCpuMillisecondsPerOperation:0.000}, whole machine busy {result.MachineBusyMillisecondsPerOperation:0.000}), p99 {result.P99Milliseconds:0.0} ms, {result.Errors} errors{(result.FirstError is null ? "" : $" (first: {Truncate(result.FirstError)})")}");
        if (server.HasExited)
        {
            throw new InvalidOperationException($"The server exited during {scenario.Name}:\n{server.Output}");
        }
    }

    peakOverall = server.PeakWorkingSet();
}

Console.Write("cold start to the first token (database already migrated) ... ");
var coldStart = await MeasureColdStartAsync(settings, seed);
Console.WriteLine($"{coldStart.TotalMilliseconds:0} ms");

var report = new BenchmarkReport(
    DateTimeOffset.UtcNow,
    Machine.Describe(),
    database.Provider,
    options.Concurrency,
    options.Duration.TotalSeconds,
    "built-in C# load generator (HttpClient, SocketsHttpHandler, keep-alive)",
    ceiling,
    results,
    peakOverall,
    coldStart.TotalMilliseconds,
    options.ReadyToRun ? "ReadyToRun publish" : "plain build (JIT)");

var markdown = report.ToMarkdown();
Console.WriteLine();
Console.WriteLine(markdown);

var folder = Path.Combine(ServerUnderTest.RepositoryRoot, options.Output);
Directory.CreateDirectory(folder);
var file = Path.Combine(folder, $"{report.Timestamp:yyyyMMdd-HHmmss}-{database.Provider.ToLowerInvariant()}.json");
await File.WriteAllTextAsync(file, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"Written to {file}");
return 0;

static string Truncate(string text) => text.Length > 300 ? text[..300] + "..." : text;

static async Task WaitUntilHealthyAsync(ServerUnderTest server, HttpClient http)
{
    var deadline = Stopwatch.StartNew();
    while (deadline.Elapsed < TimeSpan.FromSeconds(120))
    {
        if (server.HasExited)
        {
            throw new InvalidOperationException($"The server exited while starting:\n{server.Output}");
        }

        try
        {
            using var response = await http.GetAsync("health");
            if (response.StatusCode == HttpStatusCode.OK)
            {
                return;
            }
        }
        catch (HttpRequestException)
        {
            // Not listening yet.
        }

        await Task.Delay(50);
    }

    throw new TimeoutException($"The server was not healthy within two minutes:\n{server.Output}");
}

/// <summary>From process start to the first issued client_credentials token, on the database the run already migrated and seeded.</summary>
static async Task<TimeSpan> MeasureColdStartAsync(Dictionary<string, string> settings, BenchmarkSeed seed)
{
    var stopwatch = Stopwatch.StartNew();
    await using var server = ServerUnderTest.Start(settings);
    using var client = new BenchmarkClient(server.BaseAddress, 1, seed);
    while (stopwatch.Elapsed < TimeSpan.FromSeconds(60))
    {
        if (server.HasExited)
        {
            throw new InvalidOperationException($"The server exited while starting:\n{server.Output}");
        }

        try
        {
            if (await client.ClientCredentialsAsync(CancellationToken.None) is not null)
            {
                return stopwatch.Elapsed;
            }
        }
        catch (HttpRequestException)
        {
            // Not listening yet.
        }

        await Task.Delay(5);
    }

    throw new TimeoutException($"No token within a minute of starting:\n{server.Output}");
}

public sealed record BenchmarkOptions(string Database, TimeSpan Duration, TimeSpan Warmup, int Concurrency, HashSet<string>? Scenarios, string Output,
    Dictionary<string, string> Settings, bool ReadyToRun = true)
{
    /// <summary>The scenarios' names (the first word of each scenario's <c>Name</c>), in the order they run.</summary>
    public static readonly string[] ScenarioNames = ["discovery", "jwks", "client_credentials", "introspection", "refresh_token", "sign-in"];

    public static readonly string Usage =
        "usage: dotnet run -c Release --project tests/IdentityServer.Benchmarks -- [--database sqlite|postgres] [--duration 10] " +
        $"[--concurrency 32] [--warmup 10] [--scenarios {string.Join(',', ScenarioNames)}] [--output benchmark-results] " +
        "[--set Section:Key=value ...] [--no-ready-to-run]";

    public static BenchmarkOptions? Parse(string[] args)
    {
        var options = new BenchmarkOptions("sqlite", TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10), 32, null, "benchmark-results", []);
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--database" when value is "sqlite" or "postgres":
                    options = options with { Database = value };
                    break;
                case "--duration" when double.TryParse(value, CultureInfo.InvariantCulture, out var seconds) && seconds > 0:
                    options = options with { Duration = TimeSpan.FromSeconds(seconds) };
                    break;
                case "--warmup" when double.TryParse(value, CultureInfo.InvariantCulture, out var warmup) && warmup >= 0:
                    options = options with { Warmup = TimeSpan.FromSeconds(warmup) };
                    break;
                case "--concurrency" when int.TryParse(value, CultureInfo.InvariantCulture, out var concurrency) && concurrency > 0:
                    options = options with { Concurrency = concurrency };
                    break;
                case "--scenarios" when value?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } names
                    && names.All(ScenarioNames.Contains):
                    // An unknown name is refused rather than measuring nothing.
                    options = options with { Scenarios = names.ToHashSet() };
                    break;
                case "--set" when value?.Split('=', 2) is [{ Length: > 0 } key, var setting]:
                    options.Settings[key] = setting;
                    break;
                case "--output" when value is not null:
                    options = options with { Output = value };
                    break;
                case "--no-ready-to-run":
                    // The plain build output instead of the ReadyToRun publish: JIT-compiled at run time.
                    options = options with { ReadyToRun = false };
                    continue;
                default:
                    return null;
            }

            i++;
        }

        return options;
    }
}

/// <summary>A fresh database for the run: a SQLite file in a temporary folder, or a database in a throwaway PostgreSQL cluster (fsync on).</summary>
public sealed class BenchmarkDatabase : IAsyncDisposable
{
    private readonly string? _folder;
    private readonly PostgreSqlCluster? _cluster;

    private BenchmarkDatabase(string provider, string connectionString, string? folder, PostgreSqlCluster? cluster)
    {
        Provider = provider;
        ConnectionString = connectionString;
        _folder = folder;
        _cluster = cluster;
    }

    public string Provider { get; }

    public string ConnectionString { get; }

    public static async Task<BenchmarkDatabase> CreateAsync(string kind)
    {
        if (kind == "postgres")
        {
            if (!PostgreSqlCluster.IsAvailable)
            {
                throw new InvalidOperationException(PostgreSqlCluster.InstallHint);
            }

            var cluster = await PostgreSqlCluster.StartAsync(durable: true);
            return new BenchmarkDatabase("PostgreSql", await cluster.CreateDatabaseAsync(), null, cluster);
        }

        var folder = Path.Combine(Path.GetTempPath(), "idsrv-benchmark", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return new BenchmarkDatabase("Sqlite", $"Data Source={Path.Combine(folder, "identity.db")}", folder, null);
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        if (_folder is not null)
        {
            Directory.Delete(_folder, recursive: true);
        }
    }
}

/// <summary>
/// The ceiling every figure is compared with: RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second, on as many threads
/// as the machine has cores, over a payload the size of an access token.
/// </summary>
public static class SigningCeiling
{
    /// <summary>Signatures per second on all cores, and the CPU time one signature costs (for the CPU-based ratio).</summary>
    public static (double PerSecond, double CpuMilliseconds) Measure(TimeSpan duration)
    {
        var payload = Encoding.UTF8.GetBytes(new string('x', 600));
        using var warm = RSA.Create(2048);
        for (var i = 0; i < 200; i++)
        {
            warm.SignData(payload, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        }

        var threads = Environment.ProcessorCount;
        var counts = new long[threads];
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var stopwatch = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, index =>
        {
            using var rsa = RSA.Create(2048);
            var count = 0L;
            while (stopwatch.Elapsed < duration)
            {
                rsa.SignData(payload, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
                count++;
            }

            counts[index] = count;
        });
        var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
        return (counts.Sum() / stopwatch.Elapsed.TotalSeconds, cpu.TotalMilliseconds / Math.Max(1, counts.Sum()));
    }
}

public sealed record MachineInfo(string Cpu, int Cores, string Os, string Runtime, long MemoryBytes);

public static class Machine
{
    public static MachineInfo Describe()
    {
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown"
            : "unknown";
        return new MachineInfo(cpu, Environment.ProcessorCount, RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription,
            GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
    }
}

public sealed record BenchmarkReport(
    DateTimeOffset Timestamp,
    MachineInfo Machine,
    string Database,
    int Concurrency,
    double DurationSeconds,
    string LoadGenerator,
    double SigningCeilingPerSecond,
    IReadOnlyList<ScenarioResult> Scenarios,
    long ServerPeakWorkingSetBytes,
    double ColdStartMilliseconds,
    string ServerBuild)
{
    public string ToMarkdown()
    {
        var text = new StringBuilder();
        text.AppendLine($"{Machine.Cores} cores ({Machine.Cpu}), {Database}, concurrency {Concurrency}, {DurationSeconds:0} s per scenario, server: {ServerBuild}, {Timestamp:yyyy-MM-dd}");
        text.AppendLine($"RS256 signing ceiling: {SigningCeilingPerSecond:0}/s at the start (each scenario is compared with the ceiling measured just before it)");
        text.AppendLine();
        text.AppendLine("| scenario | operations/s | ceiling/s | × ceiling | target | p50 ms | p99 ms | errors | server peak WS MB | server CPU ms/op | × signature CPU |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var s in Scenarios)
        {
            var ratio = s.RatioToCeiling is { } r ? $"{r:0.00}" : "";
            var target = s.TargetRatio is { } t
                ? $"≥ {t:0.##}{(s.TargetP99Milliseconds is { } p99 ? $", p99 < {p99:0} ms" : "")}{(s.MeetsTarget == true ? " ✓" : " ✗")}"
                : "";
            text.AppendLine($"| {s.Name} | {s.OperationsPerSecond:0} | {s.CeilingPerSecond:0} | {ratio} | {target} | {s.P50Milliseconds:0.0} | {s.P99Milliseconds:0.0} | {s.Errors} | {s.PeakWorkingSetBytes / 1048576.0:0} | {s.ServerCpuMillisecondsPerOperation:0.000} | {s.CpuRatioToSignature:0.00} |");
        }

        text.AppendLine();
        text.AppendLine("× ceiling: operations/s over RS256 signatures/s measured just before, the load generator sharing the cores. " +
            "× signature CPU: one signature's CPU time over the server's CPU time per operation (load generator and other processes excluded).");
        text.AppendLine($"Server peak working set over the run (VmHWM): {ServerPeakWorkingSetBytes / 1048576.0:0} MB (budget 250 MB). " +
            $"Cold start to the first token: {ColdStartMilliseconds:0} ms (budget 2000 ms).");
        return text.ToString();
    }
}
