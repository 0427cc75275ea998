namespace IdentityServer.Telemetry;

/// <summary>The <c>OpenTelemetry</c> configuration section: where metrics and traces go.</summary>
public sealed class TelemetryOptions
{
    public const string Section = "OpenTelemetry";

    /// <summary>An OTLP collector (e.g. <c>http://otel-collector:4317</c>); metrics and traces are exported there when set.</summary>
    public Uri? Endpoint { get; set; }

    /// <summary><c>grpc</c> (default) or <c>http/protobuf</c>.</summary>
    public string Protocol { get; set; } = "grpc";

    /// <summary>The <c>service.name</c> resource attribute.</summary>
    public string ServiceName { get; set; } = "identity-server";

    public PrometheusOptions Prometheus { get; set; } = new();
}

/// <summary>The Prometheus scrape endpoint, <c>/metrics</c>: off by default, and never on the public listener unless asked.</summary>
public sealed class PrometheusOptions
{
    public bool Enabled { get; set; }

    /// <summary>
    /// A listener of its own for <c>/metrics</c>, e.g. <c>http://0.0.0.0:9464</c> (added beside the public listeners);
    /// the endpoint answers only there, and the listener answers nothing else.
    /// </summary>
    public Uri? Url { get; set; }

    /// <summary>Serve <c>/metrics</c> on the server's public listener too (only when a proxy keeps it from the internet).</summary>
    public bool OnPublicListener { get; set; }
}
