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
        var options = builder.Configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
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
            // Traces cost something on every request, so they are collected only when they have somewhere to go.
            telemetry.WithTracing(tracing => tracing
                .AddAspNetCoreInstrumentation(o => o.Filter = context => !context.Request.Path.StartsWithSegments("/health"))
                .AddHttpClientInstrumentation()
                .AddEntityFrameworkCoreInstrumentation()
                .AddSource("Npgsql"));
            telemetry.UseOtlpExporter(options.Protocol == "grpc" ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf, options.Endpoint);
        }

        if (options.Prometheus is { Enabled: true, Url: { } url })
        {
            var current = builder.WebHost.GetSetting(WebHostDefaults.ServerUrlsKey);
            builder.WebHost.UseUrls([.. (string.IsNullOrWhiteSpace(current) ? "http://localhost:5000" : current).Split(';', StringSplitOptions.RemoveEmptyEntries), url.GetLeftPart(UriPartial.Authority)]);
        }

        return builder;
    }

    /// <summary>Times every request, tagged with the protocol endpoint or page it was for (first in the pipeline).</summary>
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
            var scrape = app.MapPrometheusScrapingEndpoint("/metrics").AllowAnonymous();
            if (!options.Prometheus.OnPublicListener && options.Prometheus.Url is { } url)
            {
                var port = url.Port;
                scrape.RequireHost($"*:{port}").Add(endpoint =>
                {
                    // The Host header is the client's to write: the connection itself must have come in on the metrics listener.
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
