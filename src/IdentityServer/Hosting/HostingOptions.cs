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

    /// <summary>The proxies' addresses; empty trusts any sender of forwarded headers (only behind a proxy that strips them).</summary>
    public string[] KnownProxies { get; set; } = [];
}
