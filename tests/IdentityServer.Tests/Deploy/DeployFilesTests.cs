using System.Diagnostics;
using System.Net;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using IdentityServer.Authorization;
using IdentityServer.Data;
using IdentityServer.Hosting;
using IdentityServer.Jobs;
using IdentityServer.Keys;
using IdentityServer.Tests.Infrastructure;
using YamlDotNet.RepresentationModel;

namespace IdentityServer.Tests.Deploy;

/// <summary>
/// Docker cannot run here, so the deploy files are checked for what can be checked without it: the compose file
/// and the Kubernetes manifests parse and agree with each other and with the server (its health endpoints, its
/// configuration keys), and the Dockerfile's build copies files that exist, publishes a server that starts, and
/// probes the health endpoint on the port the server listens on.
/// </summary>
public sealed class DeployFilesTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    private static readonly string DeployFolder = Path.Combine(Repository.Root, "deploy");
    private static readonly string KubernetesFolder = Path.Combine(DeployFolder, "kubernetes");

    public static TheoryData<string> YamlFiles => new(
        new[] { Path.Combine(DeployFolder, "docker-compose.yml") }
            .Concat(Directory.GetFiles(KubernetesFolder, "*.yaml").Order(StringComparer.Ordinal))
            .Select(path => Path.GetRelativePath(Repository.Root, path)));

    [Theory]
    [MemberData(nameof(YamlFiles))]
    public void Every_compose_file_and_manifest_parses_as_YAML(string file)
    {
        var documents = LoadYaml(file);
        Assert.NotEmpty(documents);
        foreach (var document in documents)
        {
            var root = Assert.IsType<YamlMappingNode>(document.RootNode);
            if (file.StartsWith("deploy/kubernetes", StringComparison.Ordinal))
            {
                Assert.False(string.IsNullOrEmpty(Scalar(root, "apiVersion")), $"{file}: a document has no apiVersion");
                Assert.False(string.IsNullOrEmpty(Scalar(root, "kind")), $"{file}: a document has no kind");
            }
        }
    }

    [Fact]
    public void The_kustomization_lists_every_manifest()
    {
        var kustomization = (YamlMappingNode)LoadYaml("deploy/kubernetes/kustomization.yaml").Single().RootNode;
        var listed = Sequence(kustomization, "resources").Select(n => ((YamlScalarNode)n).Value!).Order(StringComparer.Ordinal);
        var present = Directory.GetFiles(KubernetesFolder, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order(StringComparer.Ordinal);
        Assert.Equal(present, listed);
    }

    [Fact]
    public void The_compose_file_runs_the_image_on_SQL_Server_2022_with_settings_the_server_knows()
    {
        var services = Mapping((YamlMappingNode)LoadYaml("deploy/docker-compose.yml").Single().RootNode, "services");
        Assert.Equal("mcr.microsoft.com/mssql/server:2022-latest", Scalar(Mapping(services, "sqlserver"), "image"));

        var identity = Mapping(services, "identityserver");
        var build = Mapping(identity, "build");
        Assert.True(File.Exists(Path.Combine(DeployFolder, Scalar(build, "context")!, Scalar(build, "dockerfile")!)), "the compose build does not find deploy/Dockerfile");
        Assert.Equal("service_healthy", Scalar(Mapping(Mapping(identity, "depends_on"), "sqlserver"), "condition"));

        var environment = Mapping(identity, "environment").Children.ToDictionary(p => ((YamlScalarNode)p.Key).Value!, p => ((YamlScalarNode)p.Value).Value ?? string.Empty);
        Assert.Equal(nameof(DatabaseProvider.SqlServer), environment["Database__Provider"]);
        Assert.Contains("Server=sqlserver", environment["ConnectionStrings__IdentityServer"]);
        AssertKnownSettings("deploy/docker-compose.yml", environment.Keys);

        var published = Sequence(identity, "ports").Select(p => ((YamlScalarNode)p).Value!).Single();
        Assert.EndsWith($":{Dockerfile.Load().ListeningPort}", published);
    }

    [Fact]
    public async Task The_Kubernetes_probes_use_the_health_endpoints_the_server_serves()
    {
        var deployment = Manifest("Deployment");
        Assert.Equal("2", Scalar(Mapping(deployment, "spec"), "replicas"));
        var container = Container(deployment);
        var port = Sequence(container, "ports").Cast<YamlMappingNode>().Single();
        Assert.Equal(Dockerfile.Load().ListeningPort.ToString(System.Globalization.CultureInfo.InvariantCulture), Scalar(port, "containerPort"));

        var probes = new Dictionary<string, string>();
        foreach (var probe in new[] { "livenessProbe", "readinessProbe", "startupProbe" })
        {
            var httpGet = Mapping(Mapping(container, probe), "httpGet");
            Assert.Equal(Scalar(port, "name"), Scalar(httpGet, "port"));
            probes[probe] = Scalar(httpGet, "path")!;
        }

        // Liveness must not depend on the database (an outage would restart every pod); readiness must.
        Assert.Equal("/health", probes["livenessProbe"]);
        Assert.Equal("/health/ready", probes["readinessProbe"]);
        using var http = server.CreateClient();
        foreach (var (probe, path) in probes)
        {
            Assert.True((await http.GetAsync(path)).StatusCode == HttpStatusCode.OK, $"{probe} {path} does not answer 200");
        }
    }

    [Fact]
    public void The_Kubernetes_secrets_hold_everything_the_deployment_reads_from_them()
    {
        var secrets = Manifests("Secret").ToDictionary(s => Scalar(Mapping(s, "metadata"), "name")!,
            s => Mapping(s, "stringData").Children.Keys.Select(k => ((YamlScalarNode)k).Value!).ToHashSet());
        var deployment = Manifest("Deployment");
        var container = Container(deployment);
        var environment = Sequence(container, "env").Cast<YamlMappingNode>().ToList();
        AssertKnownSettings("deploy/kubernetes/deployment.yaml", environment.Select(e => Scalar(e, "name")!));

        foreach (var variable in environment.Where(e => e.Children.ContainsKey("valueFrom")))
        {
            var reference = Mapping(Mapping(variable, "valueFrom"), "secretKeyRef");
            Assert.Contains(Scalar(reference, "key")!, secrets[Scalar(reference, "name")!]);
        }

        // Files mounted from a secret: every path the server is pointed at is a key of the secret mounted there.
        var volumes = Sequence(Mapping(Mapping(Mapping(deployment, "spec"), "template"), "spec"), "volumes").Cast<YamlMappingNode>()
            .Where(v => v.Children.ContainsKey("secret"))
            .ToDictionary(v => Scalar(v, "name")!, v => Scalar(Mapping(v, "secret"), "secretName")!);
        var mounts = Sequence(container, "volumeMounts").Cast<YamlMappingNode>()
            .Where(m => volumes.ContainsKey(Scalar(m, "name")!))
            .ToDictionary(m => Scalar(m, "mountPath")!, m => secrets[volumes[Scalar(m, "name")!]]);
        var filePaths = environment.Where(e => Scalar(e, "name")!.StartsWith("Keys__", StringComparison.Ordinal)).Select(e => Scalar(e, "value")!).ToList();
        Assert.Contains("/etc/identityserver/keys/signing.crt", filePaths);
        foreach (var path in filePaths)
        {
            var mount = mounts.Keys.SingleOrDefault(m => Path.GetDirectoryName(path) == m);
            Assert.True(mount is not null, $"{path} is not in a mounted secret");
            Assert.Contains(Path.GetFileName(path), mounts[mount]);
        }
    }

    [Fact]
    public async Task The_Dockerfile_health_check_probes_health_on_the_port_the_server_listens_on()
    {
        var dockerfile = Dockerfile.Load();
        var healthCheck = dockerfile.Runtime.Single(i => i.Keyword == "HEALTHCHECK").Arguments;
        var url = new Uri(Regex.Match(healthCheck, @"http://\S+").Value);
        Assert.Equal("/health", url.AbsolutePath);
        Assert.Equal(dockerfile.ListeningPort, url.Port);
        Assert.Contains(dockerfile.Runtime, i => i.Keyword == "EXPOSE" && i.Arguments == dockerfile.ListeningPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(HttpStatusCode.OK, (await server.CreateClient().GetAsync(url.AbsolutePath)).StatusCode);

        // Built by the SDK, run by the ASP.NET Core runtime image, as a user other than root.
        Assert.StartsWith("mcr.microsoft.com/dotnet/sdk:", dockerfile.Build[0].Arguments);
        Assert.StartsWith("mcr.microsoft.com/dotnet/aspnet:", dockerfile.Runtime[0].Arguments);
        var user = dockerfile.Runtime.Last(i => i.Keyword == "USER").Arguments;
        Assert.DoesNotMatch("^(root|0)(:|$)", user);
    }

    [Fact]
    public void The_Dockerfile_build_copies_only_files_that_exist()
    {
        var copies = Dockerfile.Load().Build.Where(i => i.Keyword == "COPY" && !i.Arguments.StartsWith("--from", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(copies);
        foreach (var copy in copies)
        {
            var parts = copy.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            foreach (var source in parts[..^1])
            {
                var path = Path.Combine(Repository.Root, source);
                Assert.True(File.Exists(path) || Directory.Exists(path), $"COPY {copy.Arguments}: {source} does not exist");
            }
        }
    }

    /// <summary>
    /// Runs the Dockerfile's own publish command (into a temporary folder instead of /app), then starts what the
    /// image would start (its ENTRYPOINT, in its environment): the migrations inside the app create the database.
    /// </summary>
    [Fact]
    public async Task The_publish_output_the_Dockerfile_copies_holds_a_server_that_starts_and_migrates()
    {
        var dockerfile = Dockerfile.Load();
        var publish = dockerfile.Build.Single(i => i.Keyword == "RUN" && i.Arguments.StartsWith("dotnet publish", StringComparison.Ordinal))
            .Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToList();
        var output = publish[publish.IndexOf("--output") + 1];
        Assert.Contains(dockerfile.Runtime, i => i.Keyword == "COPY" && i.Arguments == $"--from=build {output} ./");
        var entrypoint = JsonSerializer.Deserialize<string[]>(dockerfile.Runtime.Single(i => i.Keyword == "ENTRYPOINT").Arguments)!;
        Assert.Equal("dotnet", entrypoint[0]);

        var folder = Path.Combine(Path.GetTempPath(), "idsrv-publish-tests", Guid.NewGuid().ToString("N"));
        try
        {
            publish[publish.IndexOf("--output") + 1] = folder;
            var (exitCode, log) = await RunDotnetAsync(publish);
            Assert.True(exitCode == 0, $"dotnet {string.Join(' ', publish)} failed:\n{log}");

            var assembly = Path.Combine(folder, entrypoint[1]);
            Assert.True(File.Exists(assembly), $"{entrypoint[1]} is not in the publish output");
            Assert.True(File.Exists(Path.Combine(folder, "appsettings.json")));
            Assert.True(File.Exists(Path.Combine(folder, "wwwroot", "site.css")));
            Assert.False(File.Exists(Path.Combine(folder, "appsettings.Development.json")), "the developer settings (demo users and secrets) must not be published");

            var environment = dockerfile.Environment.Where(e => e.Key != "ASPNETCORE_URLS").ToDictionary(e => e.Key, e => (string?)e.Value);
            await using var process = await ServerProcess.StartHealthyAsync(environment, assemblyPath: assembly);
            using var http = process.CreateClient();
            var ready = await http.GetAsync("/health/ready");
            Assert.True(ready.StatusCode == HttpStatusCode.OK, $"/health/ready: {(int)ready.StatusCode}\n{process.Output}");
            Assert.Contains("Applying", process.StandardOutput);
        }
        finally
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    private static async Task<(int ExitCode, string Log)> RunDotnetAsync(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(ServerProcess.DotnetHost())
        {
            WorkingDirectory = Repository.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // A build of its own: no MSBuild state inherited from the `dotnet test` that runs this test, no build server left behind.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }

        start.ArgumentList.Add("--disable-build-servers");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(deadline.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>
    /// Every setting the deploy files pass by environment variable binds to something the server reads: a property
    /// of its options classes, the connection string, or the host's own variables. A misspelt key would otherwise be
    /// ignored silently.
    /// </summary>
    private static void AssertKnownSettings(string file, IEnumerable<string> names)
    {
        var sections = new Dictionary<string, Type>(StringComparer.OrdinalIgnoreCase)
        {
            [DatabaseOptions.Section] = typeof(DatabaseOptions),
            [TokenOptions.Section] = typeof(TokenOptions),
            [HostingOptions.Section] = typeof(HostingOptions),
            [KeysOptions.Section] = typeof(KeysOptions),
            [TokenPruningOptions.Section] = typeof(TokenPruningOptions),
        };
        string[] host = ["ASPNETCORE_ENVIRONMENT", "ASPNETCORE_URLS", "ASPNETCORE_HTTP_PORTS", $"ConnectionStrings__{DatabaseOptions.ConnectionStringName}"];
        foreach (var name in names)
        {
            if (host.Contains(name) || name.StartsWith("Seed__", StringComparison.Ordinal))
            {
                continue;
            }

            var segments = name.Split("__");
            Assert.True(sections.TryGetValue(segments[0], out var type), $"{file}: {name} is not a setting the server reads");
            foreach (var segment in segments.Skip(1))
            {
                var property = type!.GetProperty(segment, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
                Assert.True(property is not null, $"{file}: {name}: {type.Name} has no {segment}");
                type = Nullable.GetUnderlyingType(property!.PropertyType) ?? property.PropertyType;
            }
        }
    }

    private static List<YamlDocument> LoadYaml(string relativePath)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(Path.Combine(Repository.Root, relativePath));
        stream.Load(reader);
        return [.. stream.Documents];
    }

    private static IEnumerable<YamlMappingNode> Manifests(string kind) =>
        Directory.GetFiles(KubernetesFolder, "*.yaml")
            .SelectMany(path => LoadYaml(Path.GetRelativePath(Repository.Root, path)))
            .Select(d => (YamlMappingNode)d.RootNode)
            .Where(root => Scalar(root, "kind") == kind);

    private static YamlMappingNode Manifest(string kind) => Assert.Single(Manifests(kind));

    private static YamlMappingNode Container(YamlMappingNode deployment) =>
        (YamlMappingNode)Assert.Single(Sequence(Mapping(Mapping(Mapping(deployment, "spec"), "template"), "spec"), "containers"));

    private static YamlMappingNode Mapping(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlMappingNode mapping
            ? mapping
            : throw new Xunit.Sdk.XunitException($"No mapping '{key}' at line {node.Start.Line}.");

    private static IEnumerable<YamlNode> Sequence(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlSequenceNode sequence
            ? sequence.Children
            : throw new Xunit.Sdk.XunitException($"No list '{key}' at line {node.Start.Line}.");

    private static string? Scalar(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlScalarNode scalar ? scalar.Value : null;

    /// <summary>The Dockerfile's instructions (continuation lines joined, comments dropped), split into its two stages.</summary>
    private sealed record Dockerfile(IReadOnlyList<Instruction> Build, IReadOnlyList<Instruction> Runtime)
    {
        public static Dockerfile Load()
        {
            var instructions = new List<Instruction>();
            var current = string.Empty;
            foreach (var line in File.ReadAllLines(Path.Combine(DeployFolder, "Dockerfile")))
            {
                var trimmed = line.Trim();
                if (trimmed.StartsWith('#') || (trimmed.Length == 0 && current.Length == 0))
                {
                    continue;
                }

                current += " " + trimmed.TrimEnd('\\').Trim();
                if (!trimmed.EndsWith('\\'))
                {
                    var text = Regex.Replace(current.Trim(), @"\s+", " ");
                    var space = text.IndexOf(' ');
                    instructions.Add(new Instruction(text[..space].ToUpperInvariant(), text[(space + 1)..]));
                    current = string.Empty;
                }
            }

            var stages = instructions.Select((instruction, index) => (instruction, index)).Where(p => p.instruction.Keyword == "FROM").Select(p => p.index).ToList();
            Assert.Equal(2, stages.Count);
            return new Dockerfile(instructions[stages[0]..stages[1]], instructions[stages[1]..]);
        }

        /// <summary>The runtime image's environment (ENV instructions).</summary>
        public IReadOnlyDictionary<string, string> Environment => Runtime.Where(i => i.Keyword == "ENV")
            .SelectMany(i => i.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(pair => pair.Split('=', 2))
            .ToDictionary(pair => pair[0], pair => pair[1]);

        public int ListeningPort => new Uri(Environment["ASPNETCORE_URLS"].Replace("+", "localhost", StringComparison.Ordinal)).Port;
    }

    private sealed record Instruction(string Keyword, string Arguments);
}
