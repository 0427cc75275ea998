using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// The real server in memory, configured through settings exactly as an operator would. No service is replaced,
/// except by the tests that must move time (<paramref name="testServices"/>: the key rotation tests' clock) or reach
/// another in-memory server over HTTP (the external sign-in tests' provider).
/// Its base address is https, as outside Development the server requires TLS.
/// </summary>
public sealed class TestServerFactory(IReadOnlyDictionary<string, string?> settings, string environment = "Testing",
    Action<IServiceCollection>? testServices = null)
    : WebApplicationFactory<Program>
{
    public static readonly Uri Authority = new("https://localhost/");

    /// <summary>What this server logged at error level.</summary>
    public ServerErrorLog Errors { get; } = new();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment(environment);
        // Every test server lives in the test process: only the trimmer's own test trims the process's C heap.
        builder.UseSetting("Performance:NativeHeapTrimInterval", "00:00:00");
        foreach (var (key, value) in settings)
        {
            builder.UseSetting(key, value);
        }

        builder.ConfigureLogging(logging => logging.SetMinimumLevel(LogLevel.Warning).AddProvider(Errors));
        if (testServices is not null)
        {
            builder.ConfigureTestServices(testServices);
        }
    }

    /// <summary>A handler into this server that turns a 500 into an exception carrying what the server logged.</summary>
    public HttpMessageHandler CreateReportingHandler() => new ServerErrorReporter(Errors, Server.CreateHandler());

    protected override void ConfigureClient(HttpClient client)
    {
        base.ConfigureClient(client);
        client.BaseAddress = Authority;
    }
}
