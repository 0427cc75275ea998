using IdentityServer.Accounts;
using IdentityServer.Authorization;

namespace IdentityServer.Hosting;

/// <summary>
/// Outside Development the pages need HTTPS: their cookies are <c>Secure</c> (<c>__Host-</c>), and antiforgery refuses
/// to work without it (a page reached over plain HTTP was a 500). A browser's plain-HTTP <c>GET</c> of a page is sent
/// to the public address over HTTPS; anything else is told so. The protocol APIs answer for themselves (OpenIddict's
/// "only accepts HTTPS" error; dynamic client registration, ours, is told here), and health checks and the metrics scrape stay reachable over plain HTTP for load
/// balancers and scrapers.
/// </summary>
public static class HttpsOnlyPages
{
    private const string HttpsOnly = "This server only accepts HTTPS requests.";

    /// <param name="publicAddress">
    /// Where browsers are sent (<see cref="AccountsOptions.ConfiguredPublicAddress"/>); when none is configured, the
    /// host the browser asked for, on HTTPS's own port (the port it asked on is the plain-HTTP one).
    /// </param>
    public static IApplicationBuilder UseHttpsOnlyPages(this IApplicationBuilder app, Uri? publicAddress)
    {
        var logger = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(HttpsOnlyPages));
        return app.MapWhen(NeedsHttps, plain => plain.Run(context =>
        {
            var request = context.Request;
            if (string.Equals(request.Headers["X-Forwarded-Proto"], "https", StringComparison.OrdinalIgnoreCase))
            {
                // A proxy said HTTPS but was not believed: redirecting would send the browser round in a loop.
                logger.LogWarning(HostingEvents.ForwardedProtoIgnored,
                    "A request came through a proxy over HTTPS, but its X-Forwarded-Proto was not believed: set Hosting:TlsTerminatedByProxy " +
                    "and the proxy's address in Hosting:KnownProxies or Hosting:KnownNetworks");
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                context.Response.ContentType = "text/plain; charset=utf-8";
                return context.Response.WriteAsync("This server does not trust its proxy's X-Forwarded-Proto; see its log.", context.RequestAborted);
            }

            var api = request.Path.StartsWithSegments("/api") || request.Path.StartsWithSegments(ProtocolRoutes.Registration);
            var origin = publicAddress?.GetLeftPart(UriPartial.Authority) ?? (request.Host.HasValue ? $"https://{request.Host.Host}" : null);
            if (origin is not null && !api && (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method)))
            {
                context.Response.Redirect($"{origin}{request.PathBase}{request.Path}{request.QueryString}", permanent: true);
                return Task.CompletedTask;
            }

            // The admin API answers in JSON, as its other errors do; anything else in plain text.
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            if (api)
            {
                return context.Response.WriteAsJsonAsync(new { error = "invalid_request", error_description = HttpsOnly }, context.RequestAborted);
            }

            context.Response.ContentType = "text/plain; charset=utf-8";
            return context.Response.WriteAsync(HttpsOnly, context.RequestAborted);
        }));
    }

    /// <remarks>Dynamic client registration is no OpenIddict endpoint: it is held to HTTPS here, and answered in JSON.</remarks>
    private static bool NeedsHttps(HttpContext context) =>
        !context.Request.IsHttps
        && (!ProtocolRoutes.IsProtocolApi(context.Request.Path) || context.Request.Path.StartsWithSegments(ProtocolRoutes.Registration))
        && !context.Request.Path.StartsWithSegments("/health")
        && !context.Request.Path.StartsWithSegments("/metrics");
}
