namespace IdentityServer.Hosting;

/// <summary>The <c>Hosting</c> configuration section.</summary>
public sealed class HostingOptions
{
    public const string Section = "Hosting";

    /// <summary>
    /// TLS ends at a reverse proxy in front of the server: trust its <c>X-Forwarded-Proto</c> and
    /// <c>X-Forwarded-For</c> headers. The proxy must send <c>X-Forwarded-Proto: https</c>.
    /// </summary>
    public bool TlsTerminatedByProxy { get; set; }

    /// <summary>
    /// The proxies' addresses. With neither these nor <see cref="KnownNetworks"/>, forwarded headers are trusted from
    /// any sender (only safe where nothing but the proxy can reach the server), and the start-up log says so.
    /// </summary>
    public string[] KnownProxies { get; set; } = [];

    /// <summary>The proxies' networks in CIDR notation (<c>10.0.0.0/8</c>), for proxies without a fixed address (containers, Kubernetes).</summary>
    public string[] KnownNetworks { get; set; } = [];

    /// <summary>
    /// The path the server is published under (<c>/identity</c> for <c>https://example.com/identity/...</c>), which the
    /// proxy in front forwards as it is; empty for the root of the host. Requests outside it are answered 404.
    /// </summary>
    public string PathBase { get; set; } = string.Empty;

    /// <summary>Forwarded headers are trusted from any sender: proxy mode without a known proxy or network.</summary>
    public bool TrustsAnySender => TlsTerminatedByProxy && KnownProxies.Length == 0 && KnownNetworks.Length == 0;
}
