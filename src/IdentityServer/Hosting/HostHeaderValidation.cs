namespace IdentityServer.Hosting;

/// <summary>
/// Refuses a request whose Host header names no address a URI can hold (a port past 65535, <c>a!b</c>, <c>a..b</c>, a
/// name over 255 characters, a label that is not valid punycode such as <c>xn--zz--</c>) with a 400. Kestrel lets such a
/// header through, but OpenIddict builds the request's URI from it to find the endpoint, fails, and so takes no part in
/// the request: the token and userinfo endpoints were a 500 (our handlers found no OpenIddict request), discovery and
/// JWKS sent the caller to the login page. The 400 is the exception handler's: OAuth error JSON at the protocol
/// endpoints and the admin API, the error page elsewhere.
/// </summary>
public static class HostHeaderValidation
{
    public static IApplicationBuilder UseHostHeaderValidation(this IApplicationBuilder app)
    {
        // Nearly every request names the same host: the last one found valid is not parsed again.
        string? lastValid = null;
        return app.Use((context, next) =>
        {
            var request = context.Request;
            var host = HostOf(request);

            if (host is null)
            {
                throw NotAValidHost();
            }

            // The URI OpenIddict builds (less the path base, a valid one); a request without Host OpenIddict answers itself.
            if (host.Length > 0 && host != lastValid)
            {
                if (!Uri.TryCreate($"{request.Scheme}://{host}/", UriKind.Absolute, out _))
                {
                    throw NotAValidHost();
                }

                lastValid = host;
            }

            return next(context);
        });
    }

    private static BadHttpRequestException NotAValidHost() =>
        new("The request's Host header is not a valid host.", StatusCodes.Status400BadRequest);

    /// <summary>
    /// The request's host, decoded; null when it cannot be read at all: ASP.NET Core decodes a punycode label when the
    /// host is read, and one that is not valid punycode throws there (a 500 wherever it was read first).
    /// </summary>
    private static string? HostOf(HttpRequest request)
    {
        try
        {
            return request.Host.Value ?? string.Empty;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }
}
