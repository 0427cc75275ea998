using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// The real server as a separate process (<c>dotnet IdentityServer.dll</c> from the server project's build output),
/// configured only through environment variables, listening on a free loopback port. Captures stdout and stderr;
/// <see cref="Kill"/> ends it abruptly (crash tests), <see cref="StopAsync"/> gracefully (SIGTERM), <see cref="DisposeAsync"/> ends it and removes its temporary
/// database folder.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    /// <summary>How long a start (or an exit) may take before the test fails.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(90);

    private static readonly string[] InheritedPrefixesToDrop =
        ["ASPNETCORE_", "DOTNET_ENVIRONMENT", "Seed__", "ConnectionStrings__", "Database__", "Keys__", "Hosting__", "Accounts__", "Tokens__"];

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Task _exited;
    private readonly string? _temporaryFolder;

    private ServerProcess(Process process, int port, string? temporaryFolder, string? databasePath)
    {
        _process = process;
        _temporaryFolder = temporaryFolder;
        Port = port;
        DatabasePath = databasePath;
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
        process.OutputDataReceived += (_, e) => Append(_stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Append(_stderr, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _exited = process.WaitForExitAsync();
    }

    public int Port { get; }

    public Uri BaseAddress { get; }

    /// <summary>The SQLite file the process uses, when <see cref="Start"/> created one.</summary>
    public string? DatabasePath { get; }

    public bool HasExited => _exited.IsCompleted;

    public int? ExitCode => _exited.IsCompleted ? _process.ExitCode : null;

    public string StandardOutput
    {
        get { lock (_stdout) { return _stdout.ToString(); } }
    }

    public string StandardError
    {
        get { lock (_stderr) { return _stderr.ToString(); } }
    }

    /// <summary>Both streams, for assertion messages.</summary>
    public string Output => $"--- stdout ---\n{StandardOutput}\n--- stderr ---\n{StandardError}";

    /// <summary>Where the server's entry assembly is: the server project's build output of the same configuration and framework as the tests.</summary>
    public static string ServerAssemblyPath { get; } = FindServerAssembly();

    /// <summary>
    /// Starts the server. <paramref name="environment"/> holds configuration as environment variables (keys in
    /// either <c>Seed__Clients__0__client_id</c> or <c>Seed:Clients:0:client_id</c> form; a null value removes one).
    /// Unless given, the process gets <c>ASPNETCORE_ENVIRONMENT=Development</c> (plain http on loopback), a free
    /// port, and a fresh SQLite file in a temporary folder. <paramref name="assemblyPath"/> runs another build of the
    /// server (a publish output) instead of <see cref="ServerAssemblyPath"/>. <paramref name="port"/> is the port
    /// <see cref="BaseAddress"/> names, for an environment that sets the listener some other way than <c>ASPNETCORE_URLS</c>.
    /// </summary>
    public static ServerProcess Start(IReadOnlyDictionary<string, string?>? environment = null, string? assemblyPath = null, int? port = null)
    {
        assemblyPath ??= ServerAssemblyPath;
        var variables = (environment ?? new Dictionary<string, string?>())
            .ToDictionary(p => p.Key.Replace(":", "__", StringComparison.Ordinal), p => p.Value, StringComparer.OrdinalIgnoreCase);

        string? folder = null;
        string? database = null;
        if (!variables.ContainsKey("ConnectionStrings__IdentityServer"))
        {
            folder = Path.Combine(Path.GetTempPath(), "idsrv-process-tests", Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            database = Path.Combine(folder, "identity.db");
            variables["ConnectionStrings__IdentityServer"] = $"Data Source={database}";
        }

        var listening = port ?? FreePort();
        variables.TryAdd("ASPNETCORE_ENVIRONMENT", "Development");
        variables.TryAdd("ASPNETCORE_URLS", $"http://127.0.0.1:{listening}");

        var start = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = Path.GetDirectoryName(assemblyPath)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(assemblyPath);
        foreach (var key in start.Environment.Keys.Where(k => InheritedPrefixesToDrop.Any(p => k.StartsWith(p, StringComparison.OrdinalIgnoreCase))).ToList())
        {
            start.Environment.Remove(key);
        }

        foreach (var (key, value) in variables)
        {
            if (value is null)
            {
                start.Environment.Remove(key);
            }
            else
            {
                start.Environment[key] = value;
            }
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {assemblyPath}.");
        return new ServerProcess(process, listening, folder, database);
    }

    /// <summary>Starts the server and waits until <c>/health</c> answers 200.</summary>
    public static async Task<ServerProcess> StartHealthyAsync(IReadOnlyDictionary<string, string?>? environment = null, TimeSpan? timeout = null,
        string? assemblyPath = null, int? port = null)
    {
        var server = Start(environment, assemblyPath, port);
        try
        {
            await server.WaitUntilHealthyAsync(timeout);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Polls <c>/health</c> until it answers 200. Fails as soon as the process exits, or after <paramref name="timeout"/>,
    /// with the process's output in the message.
    /// </summary>
    public async Task WaitUntilHealthyAsync(TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? DefaultTimeout);
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        while (true)
        {
            if (HasExited)
            {
                await WaitForOutputAsync();
                throw new InvalidOperationException($"The server exited with code {_process.ExitCode} before it was healthy.\n{Output}");
            }

            try
            {
                using var response = await http.GetAsync("health", deadline.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (OperationCanceledException)
            {
                // A slow answer while starting, or the deadline: checked below.
            }

            if (deadline.IsCancellationRequested)
            {
                throw new TimeoutException($"The server was not healthy within {timeout ?? DefaultTimeout}.\n{Output}");
            }

            // Wait a moment, or less if the process exits meanwhile.
            await Task.WhenAny(_exited, Task.Delay(TimeSpan.FromMilliseconds(100), CancellationToken.None));
        }
    }

    /// <summary>Waits for the process to exit by itself; kills it and fails after <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultTimeout;
        if (await Task.WhenAny(_exited, Task.Delay(limit)) != _exited)
        {
            Kill();
            await WaitForOutputAsync();
            throw new TimeoutException($"The server did not exit within {limit}.\n{Output}");
        }

        await WaitForOutputAsync();
        return _process.ExitCode;
    }

    /// <summary>Ends the process at once (no graceful shutdown), as a crash would.</summary>
    public void Kill()
    {
        if (!HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It exited meanwhile.
            }
        }
    }

    /// <summary>
    /// Stops the process gracefully, as a container runtime or systemd would: SIGTERM, then waits for it to exit
    /// (it finishes the requests in flight first). Returns the exit code.
    /// </summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        if (!HasExited)
        {
            // Process.Kill sends SIGKILL only; SIGTERM goes through kill(1).
            using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })
                ?? throw new InvalidOperationException("Could not run kill -TERM.");
            await kill.WaitForExitAsync();
        }

        return await WaitForExitAsync(timeout);
    }

    /// <summary>A client for the server's address (no redirects followed).</summary>
    public HttpClient CreateClient() =>
        new(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(30) };

    public async ValueTask DisposeAsync()
    {
        Kill();
        await WaitForOutputAsync();
        _process.Dispose();
        if (_temporaryFolder is not null)
        {
            try
            {
                Directory.Delete(_temporaryFolder, recursive: true);
            }
            catch (IOException)
            {
                // Best effort: the temporary folder is cleaned by the OS.
            }
        }
    }

    /// <summary>After exit, the asynchronous readers may still hold the last lines: wait for the end of both streams.</summary>
    private async Task WaitForOutputAsync()
    {
        await _exited;
        _process.WaitForExit();
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The <c>dotnet</c> executable running the tests (so child processes use the same SDK and runtime).</summary>
    public static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
        {
            return host;
        }

        return Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
    }

    /// <summary>
    /// The tests run from <c>tests/IdentityServer.Tests/bin/{configuration}/{framework}</c>; the server's own build output
    /// is <c>src/IdentityServer/bin/{configuration}/{framework}</c> of the same repository.
    /// </summary>
    private static string FindServerAssembly()
    {
        var testOutput = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var framework = testOutput.Name;
        var configuration = testOutput.Parent?.Name ?? "Debug";
        var candidate = Path.Combine(Repository.Root, "src", "IdentityServer", "bin", configuration, framework, "IdentityServer.dll");
        return File.Exists(candidate)
            ? candidate
            : throw new FileNotFoundException($"The server's build output {candidate} was not found; build the solution first.");
    }
}
