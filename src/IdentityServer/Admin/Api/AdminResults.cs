using System.Text.Json;
using System.Text.Json.Serialization;
using IdentityServer.Clients;

namespace IdentityServer.Admin;

/// <summary>An admin API error: RFC 7591's <c>error</c> and <c>error_description</c>, plus every field at fault.</summary>
public sealed record AdminError(
    [property: JsonPropertyName("error")] string Error,
    [property: JsonPropertyName("error_description")] string ErrorDescription,
    [property: JsonPropertyName("errors")] IReadOnlyList<FieldError>? Errors = null);

/// <summary>HTTP answers of the admin API: JSON bodies, ETags, and errors in one shape.</summary>
public static class AdminResults
{
    public static readonly JsonSerializerOptions Json = AuditLog.Json;

    // Numbers as numbers only: the web defaults would also take "300" for 300. A member named twice is refused, not
    // read as its last value (what the admin meant is not clear, and checks may have read the other one).
    private static readonly JsonSerializerOptions ReadOptions = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict,
        AllowDuplicateProperties = false,
    };

    public static IResult Error(int status, string error, string description, IReadOnlyList<FieldError>? errors = null) =>
        Results.Json(new AdminError(error, description, errors), Json, statusCode: status);

    /// <summary>Maps a failed operation to 400, 404, 409 or 412.</summary>
    public static IResult Failure<T>(HttpContext context, AdminResult<T> result)
    {
        if (result.ETag is { } etag)
        {
            context.Response.Headers.ETag = etag;
        }

        var first = result.Errors.FirstOrDefault() ?? new FieldError("server_error", "", "The operation failed.");
        var status = result.Outcome switch
        {
            AdminOutcome.NotFound => StatusCodes.Status404NotFound,
            AdminOutcome.Conflict => StatusCodes.Status409Conflict,
            AdminOutcome.PreconditionFailed => StatusCodes.Status412PreconditionFailed,
            _ => StatusCodes.Status400BadRequest,
        };
        return Error(status, first.Error, string.Join(" ", result.Errors.Select(e => e.ToString())),
            result.Outcome is AdminOutcome.Invalid or AdminOutcome.Conflict ? result.Errors : null);
    }

    /// <summary>The value as JSON with its ETag, or the failure.</summary>
    public static IResult From<T>(HttpContext context, AdminResult<T> result, Func<T, object> body, Func<T, string>? location = null)
    {
        if (!result.Succeeded)
        {
            return Failure(context, result);
        }

        if (result.ETag is { } etag)
        {
            context.Response.Headers.ETag = etag;
        }

        var value = body(result.Value!);
        if (result.Outcome == AdminOutcome.Created && location is not null)
        {
            context.Response.Headers.Location = context.Request.PathBase + location(result.Value!); // under Hosting:PathBase
            return Results.Json(value, Json, statusCode: StatusCodes.Status201Created);
        }

        return Results.Json(value, Json);
    }

    /// <summary>Reads a JSON body strictly: JSON content only, unknown fields refused, errors naming the field.</summary>
    public static async Task<(T? Document, IResult? Error)> ReadAsync<T>(HttpContext context, bool clientDocument = false) where T : class
    {
        if (!context.Request.HasJsonContentType())
        {
            return (null, Error(StatusCodes.Status415UnsupportedMediaType, FieldError.InvalidRequest, "The body must be JSON (Content-Type: application/json)."));
        }

        try
        {
            var document = await JsonSerializer.DeserializeAsync<T>(context.Request.Body, ReadOptions, context.RequestAborted);
            return document is null
                ? (null, Error(StatusCodes.Status400BadRequest, FieldError.InvalidRequest, "The body must be a JSON object."))
                : (document, null);
        }
        catch (JsonException e)
        {
            var problem = clientDocument
                ? ClientDocumentValidator.FromJsonException(e)
                : ClientDocumentValidator.FromJsonException(e, $"see the OpenAPI document, {context.Request.PathBase}{AdminApi.OpenApiPath}");
            var error = new FieldError(clientDocument ? problem.Error : FieldError.InvalidRequest, problem.Field, problem.Description);
            return (null, Error(StatusCodes.Status400BadRequest, error.Error, error.ToString(), [error]));
        }
    }
}
