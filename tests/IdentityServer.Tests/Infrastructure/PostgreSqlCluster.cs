using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// A throwaway PostgreSQL server: initdb into a temporary folder, pg_ctl start on a free loopback port, stopped
/// and deleted at the end. Needs the server binaries (Debian: apt-get install -y postgresql). As root, the
/// commands run as the 'postgres' user, since PostgreSQL refuses to run as root.
/// </summary>
public sealed class PostgreSqlCluster : IAsyncDisposable
{
    public const string InstallHint =
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and POSTGRES_BIN); install them with 'apt-get install -y postgresql' to run the PostgreSQL tests.";

    private static readonly Lazy<Task<PostgreSqlCluster>> SharedCluster = new(StartSharedAsync);

    private readonly string _folder;
    private readonly string _bin;

    private readonly bool _durable;

    private PostgreSqlCluster(string bin, string folder, int port, bool durable)
    {
        _bin = bin;
        _folder = folder;
        Port = port;
        _durable = durable;
    }

    public int Port { get; }

    public static string? BinDirectory { get; } = FindBinDirectory();

    public static bool IsAvailable => BinDirectory is not null;

    /// <summary>One cluster for the whole test run; each fixture makes its own database in it.</summary>
    public static Task<PostgreSqlCluster> SharedAsync() => SharedCluster.Value;

    /// <summary>
    /// Starts a new cluster. Tests run it with fsync off (throwaway data); <paramref name="durable"/> keeps fsync on,
    /// as the benchmark needs so that a commit costs what it costs in production.
    /// </summary>
    public static async Task<PostgreSqlCluster> StartAsync(bool durable = false)
    {
        var bin = BinDirectory ?? throw new InvalidOperationException(InstallHint);
        var folder = Path.Combine(Path.GetTempPath(), $"idsrv-pg-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        if (RunningAsRoot)
        {
            await RunAsync("chown", ["postgres:postgres", folder], asPostgres: false);
        }

        await RunAsync(Path.Combine(bin, "initdb"), ["-D", Path.Combine(folder, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        var cluster = new PostgreSqlCluster(bin, folder, FreePort(), durable);
        await cluster.StartServerAsync();
        return cluster;
    }

    public string ConnectionString(string database) => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = Port,
        Username = "postgres",
        Database = database,
        Timeout = 5,
        CommandTimeout = 15,
    }.ConnectionString;

    public async Task<string> CreateDatabaseAsync()
    {
        var name = $"idsrv_{Guid.NewGuid():N}";
        await using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await command.ExecuteNonQueryAsync();
        return ConnectionString(name);
    }

    public async Task DropDatabaseAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Starts the server (again, after <see cref="StopServerAsync"/>): the outage tests use both.</summary>
    public Task StartServerAsync() => RunAsync(Path.Combine(_bin, "pg_ctl"),
    [
        "-D", Path.Combine(_folder, "data"), "-l", Path.Combine(_folder, "server.log"), "-w", "-t", "60",
        "-o", $"-p {Port} -k {_folder} -c listen_addresses=127.0.0.1 -c fsync={(_durable ? "on" : "off")} -c max_connections=300", "start",
    ]);

    public Task StopServerAsync(string mode = "fast") =>
        RunAsync(Path.Combine(_bin, "pg_ctl"), ["-D", Path.Combine(_folder, "data"), "-m", mode, "-w", "stop"]);

    public async ValueTask DisposeAsync()
    {
        try
        {
            // Throwaway data: no need for a clean shutdown, and the test process may be exiting.
            await StopServerAsync("immediate");
        }
        finally
        {
            Directory.Delete(_folder, recursive: true);
        }
    }

    private static async Task<PostgreSqlCluster> StartSharedAsync()
    {
        DeleteStaleFolders();
        var cluster = await StartAsync();
        // xunit 2 has no assembly-wide teardown: stop the shared cluster when the test process exits.
        AppDomain.CurrentDomain.ProcessExit += (_, _) => cluster.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return cluster;
    }

    /// <summary>
    /// The test runner may end the process before the exit handler has deleted the shared cluster's folder:
    /// remove folders of earlier runs whose server is no longer running (no postmaster.pid).
    /// </summary>
    private static void DeleteStaleFolders()
    {
        foreach (var folder in Directory.GetDirectories(Path.GetTempPath(), "idsrv-pg-*"))
        {
            if (!File.Exists(Path.Combine(folder, "data", "postmaster.pid")))
            {
                try
                {
                    Directory.Delete(folder, recursive: true);
                }
                catch (IOException)
                {
                    // Another run is using or deleting it.
                }
            }
        }
    }

    private static bool RunningAsRoot => Environment.UserName == "root";

    private static async Task RunAsync(string file, IReadOnlyList<string> arguments, bool asPostgres = true)
    {
        var start = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asPostgres && RunningAsRoot)
        {
            start.FileName = "runuser";
            foreach (var argument in new[] { "-u", "postgres", "--", file })
            {
                start.ArgumentList.Add(argument);
            }
        }
        else
        {
            start.FileName = file;
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await output}{await error}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string? FindBinDirectory()
    {
        var configured = Environment.GetEnvironmentVariable("POSTGRES_BIN");
        if (!string.IsNullOrEmpty(configured) && File.Exists(Path.Combine(configured, "initdb")))
        {
            return configured;
        }

        const string root = "/usr/lib/postgresql";
        return Directory.Exists(root)
            ? Directory.GetDirectories(root)
                .Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
                .FirstOrDefault()
            : null;
    }
}
