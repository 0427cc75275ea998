using System.Diagnostics;
using IdentityServer.Authorization;
using IdentityServer.Data;
using IdentityServer.Hosting;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Telemetry;

public static class TelemetryExtensions
{
    /// <summary>
    /// OpenTelemetry metrics (always collected: the server's own counters and endpoint latency, ASP.NET Core, HttpClient,
    /// EF Core and runtime instruments) and traces (ASP.NET Core, HttpClient, EF Core), exported over OTLP when
    /// <c>OpenTelemetry:Endpoint</c> is set and scraped at <c>/metrics</c> when <c>OpenTelemetry:Prometheus:Enabled</c>.
    /// </summary>
    public static WebApplicationBuilder AddTelemetry(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.Section)
            .Validate(o => o.Protocol is "grpc" or "http/protobuf", "OpenTelemetry:Protocol must be grpc or http/protobuf.")
            .ValidateOnStart();
        // Before binding: a value that is not a URI at all would fail the binder with a stack trace.
        CheckMetricsUrl(builder.Configuration[MetricsUrlSetting]);
        var options = builder.Configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        // The OTLP exporter takes an absolute http or https URL; another (a bare host name) failed with a stack trace.
        if (options.Endpoint is { } endpoint && (!endpoint.IsAbsoluteUri || endpoint.Scheme is not ("http" or "https")))
        {
            throw new StartupConfigurationException(
                $"OpenTelemetry:Endpoint: '{endpoint.OriginalString}' is not an http or https URL (such as http://otel-collector:4317).");
        }

        if (options.Prometheus.Enabled && options.Prometheus.Url is null && !options.Prometheus.OnPublicListener)
        {
            throw new StartupConfigurationException(
                "OpenTelemetry:Prometheus:Enabled needs OpenTelemetry:Prometheus:Url (a listener of its own, e.g. http://0.0.0.0:9464) " +
                "or OpenTelemetry:Prometheus:OnPublicListener=true (only where a proxy keeps /metrics from the internet).");
        }

        builder.Services.AddSingleton<ServerMetrics>();
        builder.Services.AddSingleton<ILoggerProvider, SecurityEventMetrics>();
        builder.Logging.AddFilter<SecurityEventMetrics>(null, LogLevel.None);
        builder.Logging.AddFilter<SecurityEventMetrics>("IdentityServer", LogLevel.Information);
        // Counted after the token request's writes commit: a commit that loses a redemption race answers an error instead.
        builder.Services.AddOpenIddict().AddServer(server => server.AddEventHandler<ApplyTokenResponseContext>(handler =>
            handler.UseSingletonHandler<TokenResponseMetrics>().SetOrder(TokenTransaction.Commit.Descriptor.Order + 1).SetType(OpenIddictServerHandlerType.Custom)));

        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(options.ServiceName))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(ServerMetrics.MeterName, "Microsoft.EntityFrameworkCore", "Npgsql")
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddRuntimeInstrumentation();
                if (options.Prometheus.Enabled)
                {
                    metrics.AddPrometheusExporter();
                }
            });

        if (options.Endpoint is not null)
        {
            // The filter sees a request before Hosting:PathBase is taken off its path: probes come to either address.
            var healthUnderPathBase = new PathString(builder.Configuration["Hosting:PathBase"] ?? "").Add("/health");
            // Traces cost something on every request, so they are collected only when they have somewhere to go.
            telemetry.WithTracing(tracing => tracing
                .AddAspNetCoreInstrumentation(o => o.Filter = context =>
                    !context.Request.Path.StartsWithSegments("/health") && !context.Request.Path.StartsWithSegments(healthUnderPathBase))
                .AddHttpClientInstrumentation()
                .AddEntityFrameworkCoreInstrumentation()
                .AddSource("Npgsql"));
            telemetry.UseOtlpExporter(options.Protocol == "grpc" ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf, options.Endpoint);
        }

        if (options.Prometheus is { Enabled: true, Url: { } url })
        {
            AddMetricsListener(builder, url);
        }

        return builder;
    }

    private const string MetricsUrlSetting = $"{TelemetryOptions.Section}:Prometheus:Url";

    /// <summary>The Kestrel endpoint added for the metrics listener when Kestrel's endpoints come from configuration.</summary>
    private const string MetricsEndpointName = "IdentityServer-PrometheusMetricsListener";

    private static void CheckMetricsUrl(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return;
        }

        // The listener is told apart by its port (MapTelemetry, UseMetricsListener), so it needs one of its own, not 0.
        if (!Uri.TryCreate(text.Trim(), UriKind.Absolute, out var url) || !Shared.AbsoluteUris.IsHttpUrl(url, originOnly: true) || url.Port == 0
            || !HasExplicitPort(text.Trim(), url))
        {
            throw new StartupConfigurationException(
                $"{MetricsUrlSetting}: '{text}' is not an http or https URL of scheme, host and port only, with a fixed port (such as http://0.0.0.0:9464).");
        }
    }

    /// <summary>Whether the URL names its port (http://0.0.0.0 means port 80, which is not what anyone means here).</summary>
    private static bool HasExplicitPort(string text, Uri url) =>
        !url.IsDefaultPort || text.Contains($":{url.Port}", StringComparison.Ordinal);

    /// <summary>
    /// Adds the metrics listener beside the public ones, which must stay where they were configured: Kestrel takes
    /// either its configured endpoints or the server URLs (<c>urls</c>, else <c>http_ports</c>/<c>https_ports</c>),
    /// and setting URLs here would otherwise replace the port settings.
    /// </summary>
    private static void AddMetricsListener(WebApplicationBuilder builder, Uri url)
    {
        var listener = url.GetLeftPart(UriPartial.Authority);
        var urls = builder.WebHost.GetSetting(WebHostDefaults.ServerUrlsKey);
        var preferUrls = builder.WebHost.GetSetting(WebHostDefaults.PreferHostingUrlsKey)?.Trim() is { } prefer
            && (prefer == "1" || prefer.Equals("true", StringComparison.OrdinalIgnoreCase));
        var endpoints = builder.Configuration.GetSection("Kestrel:Endpoints").GetChildren().Select(e => e["Url"]).OfType<string>().ToList();
        List<string> publicAddresses;
        if (endpoints.Count > 0 && !(preferUrls && !string.IsNullOrWhiteSpace(urls)))
        {
            // Kestrel ignores the server URLs when its configuration names endpoints: the listener becomes one more.
            publicAddresses = endpoints;
            builder.Configuration.AddInMemoryCollection([new($"Kestrel:Endpoints:{MetricsEndpointName}:Url", listener)]);
        }
        else
        {
            publicAddresses = string.IsNullOrWhiteSpace(urls)
                ? [.. ExpandPorts(builder.WebHost.GetSetting(WebHostDefaults.HttpPortsKey), "http"), .. ExpandPorts(builder.WebHost.GetSetting(WebHostDefaults.HttpsPortsKey), "https")]
                : [.. urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
            if (publicAddresses.Count == 0)
            {
                publicAddresses = ["http://localhost:5000"]; // Kestrel's own default
            }

            builder.WebHost.UseUrls([.. publicAddresses, listener]);
        }

        // Kestrel would stop with AddressInUse, or the public listener would answer only /metrics.
        foreach (var address in publicAddresses)
        {
            if (PortOf(address) == url.Port)
            {
                throw new StartupConfigurationException(
                    $"{MetricsUrlSetting}: port {url.Port} is also the public listener {address}; the metrics listener needs a port of its own.");
            }
        }
    }

    /// <summary>As ASP.NET Core reads <c>http_ports</c> and <c>https_ports</c> when <c>urls</c> is not set.</summary>
    private static IEnumerable<string> ExpandPorts(string? ports, string scheme) =>
        (ports ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(port => $"{scheme}://*:{port}");

    private static int? PortOf(string address)
    {
        try
        {
            var binding = BindingAddress.Parse(address);
            return binding.IsUnixPipe || binding.IsNamedPipe ? null : binding.Port;
        }
        catch (FormatException)
        {
            return null; // Kestrel reports it when it binds
        }
    }

    /// <summary>
    /// The metrics listener answers <c>/metrics</c> and nothing else: the rest of the server (its issuer, sign-in,
    /// tokens, the admin API) belongs on the public listener. First in the pipeline, before anything spends work on it.
    /// </summary>
    public static IApplicationBuilder UseMetricsListener(this WebApplication app)
    {
        if (MetricsListenerPort(app.Configuration) is { } port)
        {
            // The port the connection came in on, not the Host header, which the client writes.
            app.Use((context, next) => context.Connection.LocalPort == port && context.Request.Path != "/metrics" ? NotFound(context) : next(context));
        }

        return app;
    }

    /// <summary>The port of the Prometheus listener of its own (<c>OpenTelemetry:Prometheus:Url</c>), when there is one.</summary>
    public static int? MetricsListenerPort(IConfiguration configuration) =>
        configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>()?.Prometheus is { Enabled: true, Url: { } url } ? url.Port : null;

    /// <summary>Times every request, tagged with the protocol endpoint or page it was for (first in the pipeline after <see cref="UseMetricsListener"/>).</summary>
    public static IApplicationBuilder UseEndpointMetrics(this IApplicationBuilder app)
    {
        var metrics = app.ApplicationServices.GetRequiredService<ServerMetrics>();
        return app.Use(async (context, next) =>
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await next(context);
            }
            finally
            {
                metrics.EndpointAnswered(EndpointOf(context.Request.Path), context.Response.StatusCode, Stopwatch.GetElapsedTime(started).TotalSeconds);
            }
        });
    }

    public static WebApplication MapTelemetry(this WebApplication app)
    {
        var options = app.Configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        if (options.Prometheus.Enabled)
        {
            var scrape = app.MapPrometheusScrapingEndpoint("/metrics").AllowAnonymous().GetAndHeadOnly();
            if (!options.Prometheus.OnPublicListener && options.Prometheus.Url is { } url)
            {
                // By the port the connection came in on, not the Host header: the client writes that, and a scrape
                // through a mapped port (a container's, a Kubernetes Service's) names another port there.
                var port = url.Port;
                scrape.Add(endpoint =>
                {
                    var scrapeMetrics = endpoint.RequestDelegate!;
                    endpoint.RequestDelegate = context => context.Connection.LocalPort == port ? scrapeMetrics(context) : NotFound(context);
                });
            }
        }

        return app;
    }

    private static Task NotFound(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    }

    private static string EndpointOf(PathString path) => path.Value switch
    {
        ProtocolRoutes.Token => "token",
        ProtocolRoutes.Authorize => "authorize",
        ProtocolRoutes.Discovery => "discovery",
        ProtocolRoutes.Jwks => "jwks",
        ProtocolRoutes.Introspection => "introspection",
        ProtocolRoutes.Revocation => "revocation",
        ProtocolRoutes.UserInfo => "userinfo",
        ProtocolRoutes.EndSession => "end_session",
        ProtocolRoutes.PushedAuthorization => "par",
        ProtocolRoutes.DeviceAuthorization => "device_authorization",
        ProtocolRoutes.Verification => "verification",
        "/account/login" => "login",
        "/health" or "/health/ready" => "health",
        _ when path.StartsWithSegments("/api/admin") => "admin_api",
        _ => "other",
    };
}
