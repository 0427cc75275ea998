namespace IdentityServer.Hosting;

/// <summary>
/// Reads a form body before anything else does, so that one the framework cannot parse is the client's error (400)
/// wherever it would first have been read: the rate limiter, OpenIddict or a page. A multipart body without its
/// boundary fails with an <see cref="IOException"/>, which the exception handler cannot tell from a server fault; it is
/// rethrown here as a bad request. (A NUL in a value or too many fields fail with an <see cref="InvalidDataException"/>,
/// which the handler already maps to 400.) A Content-Type that names a form but does not parse as one
/// (<c>application/x-www-form-urlencoded; charset="</c>, <c>application/x-www-form-urlencodedX</c>) is refused here
/// too: OpenIddict matches the type by its start and then fails to read the form, a 500 at every protocol endpoint.
/// ASP.NET Core keeps the parsed form, so the body is still read once.
/// </summary>
public static class FormBodyValidation
{
    public static IApplicationBuilder UseFormBodyValidation(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        if (!context.Request.HasFormContentType && NamesAForm(context.Request.ContentType))
        {
            throw new BadHttpRequestException("The request's Content-Type names a form but is not a valid one.", StatusCodes.Status400BadRequest);
        }

        if (context.Request.HasFormContentType)
        {
            try
            {
                await context.Request.ReadFormAsync(context.RequestAborted);
            }
            catch (IOException exception) when (!context.RequestAborted.IsCancellationRequested)
            {
                throw new BadHttpRequestException("The request's form body cannot be read.", StatusCodes.Status400BadRequest, exception);
            }
        }

        await next(context);
    });

    private static bool NamesAForm(string? contentType) =>
        contentType?.TrimStart() is { } type
        && (type.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase)
            || type.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase));
}
