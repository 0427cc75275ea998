using IdentityServer.Authorization;

namespace IdentityServer.Hosting;

/// <summary>
/// Outside Development the pages need HTTPS: their cookies are <c>Secure</c> (<c>__Host-</c>), and antiforgery refuses
/// to work without it (a page reached over plain HTTP was a 500). A browser that came over plain HTTP is sent to the
/// same address over HTTPS; any other request is told so. The protocol APIs answer for themselves (OpenIddict's "only
/// accepts HTTPS" error), and health checks and the metrics scrape stay reachable over plain HTTP for load balancers
/// and scrapers.
/// </summary>
public static class HttpsOnlyPages
{
    private const string HttpsOnly = "This server only accepts HTTPS requests.";

    public static IApplicationBuilder UseHttpsOnlyPages(this IApplicationBuilder app) =>
        app.MapWhen(NeedsHttps, plain => plain.Run(context =>
        {
            var request = context.Request;
            if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
            {
                context.Response.Redirect($"https://{request.Host}{request.PathBase}{request.Path}{request.QueryString}", permanent: true);
                return Task.CompletedTask;
            }

            // The admin API answers in JSON, as its other errors do; anything else in plain text.
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return request.Path.StartsWithSegments("/api")
                ? context.Response.WriteAsJsonAsync(new { error = "invalid_request", error_description = HttpsOnly }, context.RequestAborted)
                : context.Response.WriteAsync(HttpsOnly, context.RequestAborted);
        }));

    private static bool NeedsHttps(HttpContext context) =>
        !context.Request.IsHttps
        && !ProtocolRoutes.IsProtocolApi(context.Request.Path)
        && !context.Request.Path.StartsWithSegments("/health")
        && !context.Request.Path.StartsWithSegments("/metrics");
}
