namespace IdentityServer.Authorization;

/// <summary>
/// A HEAD to the discovery document or the JWKS is answered as its GET without the body (RFC 9110 section 9.3.2).
/// OpenIddict takes only GET there and refuses a HEAD as <c>invalid_request</c>, so without this a HEAD had a 200
/// only when the document cache could answer it, and a 400 when it could not: before the first GET, and with a query
/// string or an <c>Origin</c>. The request is handed on as a GET, with the body going nowhere, and is a HEAD again after.
/// The addresses are matched as OpenIddict matches its endpoints (any case, one trailing slash or none), so a HEAD is
/// answered wherever the GET is.
/// </summary>
public static class MetadataHeadRequests
{
    public static IApplicationBuilder UseMetadataHeadRequests(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var request = context.Request;
        if (!HttpMethods.IsHead(request.Method) || !IsMetadataPath(request.Path))
        {
            await next(context);
            return;
        }

        var method = request.Method;
        var body = context.Response.Body;
        request.Method = HttpMethods.Get;
        context.Response.Body = Stream.Null;
        try
        {
            await next(context);
        }
        finally
        {
            context.Response.Body = body;
            request.Method = method;
        }
    });

    /// <summary>The discovery document's or the JWKS's address, with or without one trailing slash (PathString compares ignoring case).</summary>
    private static bool IsMetadataPath(PathString path) =>
        path == ProtocolRoutes.Discovery || path == ProtocolRoutes.Discovery + "/" || path == ProtocolRoutes.Jwks || path == ProtocolRoutes.Jwks + "/";
}
