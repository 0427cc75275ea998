using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace IdentityServer.Benchmarks;

/// <summary>
/// The server as its own process (<c>dotnet IdentityServer.dll</c> from the server's build output of the benchmark's
/// configuration), configured only through environment variables as an operator would, on a free loopback port.
/// </summary>
public sealed class ServerUnderTest : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ServerUnderTest(Process process, Uri baseAddress)
    {
        _process = process;
        BaseAddress = baseAddress;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Uri BaseAddress { get; }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) { return _output.ToString(); } }
    }

    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>The plain build output, or after <see cref="PublishReadyToRunAsync"/> the published server.</summary>
    public static string AssemblyPath { get; private set; } = FindServerAssembly();

    /// <summary>
    /// Publishes the server as it is deployed for production (Release, ReadyToRun: precompiled, so it starts without
    /// JIT-compiling its whole pipeline first) into the benchmark's own output folder, and runs that from then on.
    /// Incremental: only changed assemblies are compiled again.
    /// </summary>
    public static async Task PublishReadyToRunAsync()
    {
        var output = Path.Combine(AppContext.BaseDirectory, "server-ready-to-run");
        // The publish copies only files newer than the folder's: an assembly taken out of (or put back into) ReadyToRun
        // in the project file would keep its old image. A project file newer than the last publish starts it afresh.
        var published = Path.Combine(output, "IdentityServer.dll");
        var projectFile = Path.Combine(RepositoryRoot, "src", "IdentityServer", "IdentityServer.csproj");
        if (File.Exists(published) && File.GetLastWriteTimeUtc(projectFile) > File.GetLastWriteTimeUtc(published))
        {
            Directory.Delete(output, recursive: true);
        }

        var rid = System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier;
        var start = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = RepositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[]
                 {
                     "publish", Path.Combine("src", "IdentityServer", "IdentityServer.csproj"), "--configuration", "Release",
                     "--runtime", rid, "--self-contained", "false", "-p:PublishReadyToRun=true", "--output", output,
                 })
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not run dotnet publish.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet publish failed:\n{await stdout}\n{await stderr}");
        }

        AssemblyPath = Path.Combine(output, "IdentityServer.dll");
    }

    public static ServerUnderTest Start(IReadOnlyDictionary<string, string> settings)
    {
        var port = FreePort();
        var start = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = Path.GetDirectoryName(AssemblyPath)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(AssemblyPath);
        foreach (var key in start.Environment.Keys.Where(IsServerSetting).ToList())
        {
            start.Environment.Remove(key);
        }

        start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        foreach (var (key, value) in settings)
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {AssemblyPath}.");
        return new ServerUnderTest(process, new Uri($"http://127.0.0.1:{port}/"));
    }

    /// <summary>The largest resident set the process has had so far (VmHWM), in bytes.</summary>
    public long PeakWorkingSet() => ReadStatus("VmHWM:");

    /// <summary>CPU time the process has used so far (user + system, from /proc/&lt;pid&gt;/stat).</summary>
    public TimeSpan CpuTime()
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the command name, in clock ticks of 1/100 s.
            return TimeSpan.FromSeconds((long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0);
        }
        catch (IOException)
        {
            return TimeSpan.Zero;
        }
    }

    /// <summary>The resident set now (VmRSS), in bytes.</summary>
    public long WorkingSet() => ReadStatus("VmRSS:");

    private long ReadStatus(string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    return long.Parse(line[field.Length..].Trim().Split(' ')[0]) * 1024;
                }
            }
        }
        catch (IOException)
        {
            // The process has exited.
        }

        return 0;
    }

    /// <summary>Stops the process gracefully (SIGTERM), killing it if it does not exit in time.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()]))
            {
                await kill.WaitForExitAsync();
            }

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    private static bool IsServerSetting(string key) =>
        key.StartsWith("ASPNETCORE_", StringComparison.OrdinalIgnoreCase) || key.StartsWith("DOTNET_ENVIRONMENT", StringComparison.OrdinalIgnoreCase)
        || key.Contains("__", StringComparison.Ordinal);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host
        : Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";

    /// <summary>The benchmark runs from <c>tests/IdentityServer.Benchmarks/bin/{configuration}/{framework}</c>; the server's output is beside it under src.</summary>
    private static string FindServerAssembly()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var framework = output.Name;
        var configuration = output.Parent?.Name ?? "Release";
        var candidate = Path.Combine(RepositoryRoot, "src", "IdentityServer", "bin", configuration, framework, "IdentityServer.dll");
        return File.Exists(candidate)
            ? candidate
            : throw new FileNotFoundException($"The server's build output {candidate} was not found; run the benchmark with dotnet run, which builds it.");
    }

    private static string FindRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "IdentityServer.sln")))
            {
                return folder.FullName;
            }
        }

        throw new DirectoryNotFoundException($"No IdentityServer.sln above {AppContext.BaseDirectory}.");
    }
}
