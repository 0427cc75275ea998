using Microsoft.AspNetCore.Http.Features;

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
/// A form is also held to <see cref="MaxFormBodyBytes"/> and <see cref="MaxFormValueLength"/> (ASP.NET Core's defaults,
/// 30 MB and 4 million characters a value, let a page be sent a user name of millions of characters, which the rate
/// limiter then kept for its window).
/// </summary>
public static class FormBodyValidation
{
    /// <summary>
    /// The most a form post (a page's, or a protocol endpoint's) may send: with a wide margin, as the largest fields a
    /// legitimate post has (a request object, a client assertion, a subject token, a key set pasted in an admin form, a
    /// passkey's answer) are a few kilobytes each.
    /// </summary>
    public const int MaxFormBodyBytes = 1024 * 1024;

    /// <summary>The longest value of one form field (characters, once decoded).</summary>
    public const int MaxFormValueLength = 256 * 1024;

    public static WebApplicationBuilder AddFormLimits(this WebApplicationBuilder builder)
    {
        builder.Services.Configure<FormOptions>(options =>
        {
            options.ValueLengthLimit = MaxFormValueLength;
            options.MultipartBodyLengthLimit = MaxFormBodyBytes;
        });
        return builder;
    }

    public static IApplicationBuilder UseFormBodyValidation(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        if (!context.Request.HasFormContentType && NamesAForm(context.Request.ContentType))
        {
            throw new BadHttpRequestException("The request's Content-Type names a form but is not a valid one.", StatusCodes.Status400BadRequest);
        }

        if (context.Request.HasFormContentType)
        {
            if (context.Request.ContentLength > MaxFormBodyBytes)
            {
                // Answered by the exception handler, in the endpoint's own format (and counted as a token error there).
                throw new BadHttpRequestException("The request's form body is over the limit.", StatusCodes.Status413PayloadTooLarge);
            }

            // A body sent without its length (chunked) is stopped by the server where it runs over (Kestrel; answered 400).
            if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
            {
                bodySize.MaxRequestBodySize = MaxFormBodyBytes;
            }

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
