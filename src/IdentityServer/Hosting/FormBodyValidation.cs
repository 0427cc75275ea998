namespace IdentityServer.Hosting;

/// <summary>
/// Reads a form body before anything else does, so that one the framework cannot parse is the client's error (400)
/// wherever it would first have been read: the rate limiter, OpenIddict or a page. A multipart body without its
/// boundary fails with an <see cref="IOException"/>, which the exception handler cannot tell from a server fault; it is
/// rethrown here as a bad request. (A NUL in a value or too many fields fail with an <see cref="InvalidDataException"/>,
/// which the handler already maps to 400.) ASP.NET Core keeps the parsed form, so the body is still read once.
/// </summary>
public static class FormBodyValidation
{
    public static IApplicationBuilder UseFormBodyValidation(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
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
}
