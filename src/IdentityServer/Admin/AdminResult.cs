using System.Globalization;
using System.Text.Json.Serialization;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Admin;

public enum AdminOutcome
{
    Ok,
    Created,
    NotFound,
    Invalid,
    Conflict,
    PreconditionFailed,
}

/// <summary>A problem with one field of a request (the RFC 7591 error code for clients, invalid_request otherwise).</summary>
public sealed record FieldError(
    [property: JsonPropertyName("error")] string Error,
    [property: JsonPropertyName("field")] string Field,
    [property: JsonPropertyName("description")] string Description)
{
    public const string InvalidRequest = "invalid_request";

    public static FieldError Request(string field, string description) => new(InvalidRequest, field, description);

    public override string ToString() => Field.Length == 0 ? Description : $"{Field}: {Description}";
}

/// <summary>What an admin operation did, for the API (a status code) and the pages (a message or field errors) alike.</summary>
public sealed class AdminResult<T>
{
    private AdminResult(AdminOutcome outcome, T? value, string? etag, IReadOnlyList<FieldError> errors)
    {
        Outcome = outcome;
        Value = value;
        ETag = etag;
        Errors = errors;
    }

    public AdminOutcome Outcome { get; }

    public T? Value { get; }

    /// <summary>The entry's current entity tag (after the change), quoted as in an ETag header.</summary>
    public string? ETag { get; }

    public IReadOnlyList<FieldError> Errors { get; }

    public bool Succeeded => Outcome is AdminOutcome.Ok or AdminOutcome.Created;

    public static AdminResult<T> Ok(T value, string? etag = null) => new(AdminOutcome.Ok, value, etag, []);

    public static AdminResult<T> Created(T value, string? etag = null) => new(AdminOutcome.Created, value, etag, []);

    public static AdminResult<T> NotFound(string description) => new(AdminOutcome.NotFound, default, null, [new("not_found", "", description)]);

    public static AdminResult<T> Invalid(IReadOnlyList<FieldError> errors) => new(AdminOutcome.Invalid, default, null, errors);

    public static AdminResult<T> Invalid(string field, string description) => Invalid([FieldError.Request(field, description)]);

    public static AdminResult<T> Conflict(FieldError error) => new(AdminOutcome.Conflict, default, null, [error]);

    public static AdminResult<T> Conflict(string field, string description) => Conflict(new FieldError("conflict", field, description));

    public static AdminResult<T> Stale(string? currentETag) => new(AdminOutcome.PreconditionFailed, default, currentETag,
        [new("precondition_failed", "", "The entry was changed since it was read (its ETag no longer matches If-Match); read it again and reapply the change.")]);

    /// <summary>The same failure for another result type.</summary>
    public AdminResult<TOther> As<TOther>() => Succeeded
        ? throw new InvalidOperationException("Only a failure can change its value type.")
        : new(Outcome, default, ETag, Errors);
}

/// <summary>A page of a list.</summary>
public sealed record PageOf<T>(
    [property: JsonPropertyName("items")] IReadOnlyList<T> Items,
    [property: JsonPropertyName("total")] int Total,
    [property: JsonPropertyName("page")] int Page,
    [property: JsonPropertyName("page_size")] int PageSize)
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 200;

    public int Pages => Math.Max(1, (Total + PageSize - 1) / PageSize);

    public static (int Page, int PageSize) Normalize(int? page, int? pageSize) =>
        (Math.Max(1, page ?? 1), Math.Clamp(pageSize ?? DefaultPageSize, 1, MaxPageSize));
}

/// <summary>
/// A whole number in the query string (a page, a page size, a limit, the audit's cursor), held to <see cref="long"/>'s
/// range, and by <see cref="AsInt32"/> to <see cref="int"/>'s: a number beyond it is out of range as one below 1 is, and
/// is clamped like it (the largest page is past the end, so empty), not refused as a query that cannot be parsed.
/// Text that is not a whole number (<c>abc</c>, <c>1.5</c>, nothing) binds too, as a QueryNumber that is not
/// <see cref="IsWholeNumber"/>, so that the admin API refuses it naming the parameter (<see cref="QueryParameterChecks"/>)
/// rather than with the framework's 400 that names nothing.
/// </summary>
public readonly record struct QueryNumber(long Value, bool IsWholeNumber = true)
{
    public int AsInt32 => (int)Math.Clamp(Value, int.MinValue, int.MaxValue);

    public static bool TryParse(string? text, out QueryNumber number)
    {
        number = new QueryNumber(0, IsWholeNumber: false);
        var digits = text.AsSpan().Trim();
        var negative = digits is ['-', ..];
        if (digits is ['-' or '+', ..])
        {
            digits = digits[1..];
        }

        if (digits.IsEmpty || digits.ContainsAnyExceptInRange('0', '9'))
        {
            return true;
        }

        digits = digits.TrimStart('0');
        // 18 digits always fit a long; more are clamped to its range, as the number would be.
        var magnitude = digits.Length > 18 ? long.MaxValue : digits.IsEmpty ? 0 : long.Parse(digits, CultureInfo.InvariantCulture);
        number = new QueryNumber(negative ? -magnitude : magnitude);
        return true;
    }
}

public static class Paging
{
    /// <summary>
    /// One page of an ordered query, and the total. The offset is computed in long, since (page - 1) * size
    /// overflows int for large page numbers; a page past the end is empty without a second query, so no overflowed offset reaches the database.
    /// </summary>
    public static async Task<(List<T> Items, int Total)> PageAsync<T>(this IOrderedQueryable<T> query, int page, int pageSize, CancellationToken ct)
    {
        var total = await query.CountAsync(ct);
        var offset = (long)(page - 1) * pageSize;
        return offset >= total ? ([], total) : (await query.Skip((int)offset).Take(pageSize).ToListAsync(ct), total);
    }
}

/// <summary>Entity tags for optimistic concurrency: the stored concurrency token, quoted.</summary>
public static class ETags
{
    public static string? Format(string? token) => token is null ? null : $"\"{token}\"";

    /// <summary>
    /// Whether an If-Match value allows a change to an entry whose tag is <paramref name="current"/>: no If-Match
    /// (an unconditional change), <c>*</c>, or a list holding the current tag. If-Match compares strongly (RFC 9110
    /// section 13.1.1): a weak tag (<c>W/"..."</c>) never matches, whatever it holds.
    /// </summary>
    public static bool Matches(string? ifMatch, string? current)
    {
        if (string.IsNullOrWhiteSpace(ifMatch))
        {
            return true;
        }

        foreach (var candidate in ifMatch.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (candidate == "*")
            {
                return true;
            }

            if (current is not null && !candidate.StartsWith("W/", StringComparison.OrdinalIgnoreCase) && candidate.Trim('"') == current)
            {
                return true;
            }
        }

        return false;
    }
}
