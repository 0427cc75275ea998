namespace IdentityServer.Authorization;

/// <summary>
/// A HEAD to the discovery document or the JWKS is answered as its GET without the body (RFC 9110 section 9.3.2).
/// OpenIddict takes only GET there and refuses a HEAD as <c>invalid_request</c>, so without this a HEAD had a 200
/// only when the document cache could answer it, and a 400 when it could not: before the first GET, and with a query
/// string or an <c>Origin</c>. The request is handed on as a GET, with the body going nowhere, and is a HEAD again after.
/// </summary>
public static class MetadataHeadRequests
{
    public static IApplicationBuilder UseMetadataHeadRequests(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var request = context.Request;
        if (!HttpMethods.IsHead(request.Method) || !(request.Path == ProtocolRoutes.Discovery || request.Path == ProtocolRoutes.Jwks))
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
}
