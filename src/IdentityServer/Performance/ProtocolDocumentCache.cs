using System.Collections.Concurrent;
using System.Security.Cryptography;
using IdentityServer.Authorization;
using IdentityServer.Keys;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace IdentityServer.Performance;

/// <summary>
/// The discovery document and the JWKS change only with the keys (and the configuration, which needs a restart), so
/// they are produced by OpenIddict once per address asked and served from memory until the published keys change,
/// with <c>Cache-Control</c> and a strong <c>ETag</c> (a matching <c>If-None-Match</c> gets 304). Requests with an
/// <c>Origin</c> (CORS) or a query string take the normal path, and so does any address but the issuer's when
/// <c>Tokens:Issuer</c> is set.
/// </summary>
public sealed class ProtocolDocumentCache(RequestDelegate next, KeyRing keys, TimeProvider clock, IOptions<TokenOptions> tokens,
    IOptions<KeysOptions> keyOptions)
{
    /// <summary>How long clients and proxies may keep the documents at most.</summary>
    private static readonly TimeSpan MaxAge = TimeSpan.FromHours(1);

    private const int Capacity = 32;
    private string? _cacheControl;
    private readonly ConcurrentDictionary<string, Document> _documents = new(StringComparer.Ordinal);

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        // A HEAD arrives here as a GET whose body goes nowhere (Authorization/MetadataHeadRequests).
        if (!HttpMethods.IsGet(request.Method)
            || !(request.Path == ProtocolRoutes.Discovery || request.Path == ProtocolRoutes.Jwks)
            || request.QueryString.HasValue || request.Headers.ContainsKey(HeaderNames.Origin))
        {
            await next(context);
            return;
        }

        // OpenIddict builds discovery's endpoint addresses from the address asked (a configured issuer sets only the
        // issuer), so each address has its own document. With a configured issuer only its own address is cached:
        // answers for other Host headers are made per request, and made-up hosts cannot take the cache's places.
        var origin = $"{request.Scheme}://{request.Host}{request.PathBase}";
        if (tokens.Value.Issuer is { } issuer && !string.Equals($"{origin}/", issuer.AbsoluteUri, StringComparison.OrdinalIgnoreCase))
        {
            await next(context);
            return;
        }

        // The route's own spelling: the routes match any case, and each casing must not take a place of its own.
        var key = origin + (request.Path == ProtocolRoutes.Discovery ? ProtocolRoutes.Discovery : ProtocolRoutes.Jwks);
        var version = keys.Version;
        var now = clock.GetUtcNow();
        if (_documents.TryGetValue(key, out var document) && document.Version == version && now < document.ValidUntil)
        {
            await WriteAsync(context, document);
            return;
        }

        var original = context.Response.Body;
        using var buffer = new MemoryStream();
        context.Response.Body = buffer;
        try
        {
            await next(context);
        }
        finally
        {
            context.Response.Body = original;
        }

        if (context.Response.StatusCode != StatusCodes.Status200OK)
        {
            buffer.Position = 0;
            await buffer.CopyToAsync(original, context.RequestAborted);
            return;
        }

        var body = buffer.ToArray();
        document = new Document(body, context.Response.ContentType ?? "application/json;charset=UTF-8",
            $"\"{Convert.ToBase64String(SHA256.HashData(body), 0, 16).TrimEnd('=')}\"", version, keys.PublishedUntil());
        if (_documents.Count >= Capacity && !_documents.ContainsKey(key))
        {
            // Full (many addresses asked without a configured issuer): start again rather than refuse new addresses.
            _documents.Clear();
        }

        _documents[key] = document;

        context.Response.Headers.Remove(HeaderNames.Pragma);
        context.Response.Headers.Remove(HeaderNames.Expires);
        await WriteAsync(context, document);
    }

    /// <summary>
    /// <see cref="MaxAge"/>, but with rotating keys never longer than a new key is in every instance's JWKS before it
    /// signs: <c>Keys:PublishAhead</c> less one <c>Keys:CheckInterval</c> (the longest another instance takes to load
    /// it). A client that cached the JWKS just before the key appeared then fetches it again before the key's first token.
    /// </summary>
    private string CacheControl => _cacheControl ??= CacheControlFor(keyOptions.Value, keys.Rotates);

    private static string CacheControlFor(KeysOptions options, bool rotates)
    {
        var maxAge = rotates && options.PublishAhead - options.CheckInterval < MaxAge ? options.PublishAhead - options.CheckInterval : MaxAge;
        return $"public, max-age={(long)Math.Max(0, maxAge.TotalSeconds)}";
    }

    private Task WriteAsync(HttpContext context, Document document)
    {
        var response = context.Response;
        response.Headers.CacheControl = CacheControl;
        response.Headers.ETag = document.ETag;
        // A cached copy of this answer has no CORS headers: a browser or proxy must not hand it to a CORS request.
        response.Headers.Vary = HeaderNames.Origin;
        if (context.Request.Headers.IfNoneMatch.ToString() is { Length: > 0 } match && match.Split(',').Any(tag => Matches(tag.Trim(), document.ETag)))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }

        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = document.ContentType;
        response.ContentLength = document.Body.Length;
        return response.Body.WriteAsync(document.Body, context.RequestAborted).AsTask();
    }

    /// <summary>If-None-Match compares weakly (RFC 9110, 13.1.2): a proxy that compressed the answer may have weakened the tag.</summary>
    private static bool Matches(string tag, string etag) =>
        tag == "*" || (tag.StartsWith("W/", StringComparison.Ordinal) ? tag[2..] : tag) == etag;

    private sealed record Document(byte[] Body, string ContentType, string ETag, long Version, DateTimeOffset ValidUntil);
}

public static class ProtocolDocumentCacheExtensions
{
    public static IApplicationBuilder UseProtocolDocumentCache(this IApplicationBuilder app) => app.UseMiddleware<ProtocolDocumentCache>();
}
