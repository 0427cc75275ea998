using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Clients;

/// <summary>
/// The keys of clients registered with a <c>jwks_uri</c> (RFC 7591 section 2) instead of inline <c>jwks</c>: read from
/// the client's URI and kept for <see cref="ClientOptions.KeySetRefresh"/>, so the client rotates its keys by publishing
/// new ones there (ahead of using them) without anyone changing its registration. Every verification of the client's
/// signatures reads them here (its assertions, its request objects). When the URI cannot be read, the keys read last
/// keep working (and the URI is tried again after <see cref="RetryAfterFailure"/>); a client never read has none, so
/// its assertions are refused (invalid_client).
/// </summary>
public sealed class ClientKeySets(IHttpClientFactory httpClients, TimeProvider clock, IOptions<ClientOptions> options, ILogger<ClientKeySets> logger)
{
    public const string HttpClientName = "client-jwks";

    /// <summary>A key set larger than this is no client's: refused rather than read into memory.</summary>
    public const int MaxBytes = 64 * 1024;

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    /// <summary>How long a URI that could not be read is left alone, so a client down or slow costs one attempt a while.</summary>
    public static readonly TimeSpan RetryAfterFailure = TimeSpan.FromSeconds(30);

    /// <summary>
    /// What a client registered by jwks_uri holds while OpenIddict validates it for storing (it wants a confidential
    /// client to hold a secret or a signing key): one RSA public key of no one, never stored nor used to verify anything.
    /// </summary>
    public static readonly string DeclaredJson = DeclaredKeySet();

    private static string DeclaredKeySet()
    {
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var key = rsa.ExportParameters(includePrivateParameters: false);
        return JsonSerializer.Serialize(new
        {
            keys = new[] { new { kty = "RSA", use = "sig", n = Base64UrlEncoder.Encode(key.Modulus), e = Base64UrlEncoder.Encode(key.Exponent) } },
        });
    }

    private sealed record Entry(JsonWebKeySet? Keys, DateTimeOffset FreshUntil);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>The key set published at <paramref name="uri"/>, from memory while fresh; null when it was never read.</summary>
    public async Task<JsonWebKeySet?> GetAsync(string uri, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (_entries.TryGetValue(uri, out var known) && known.FreshUntil > now)
        {
            return known.Keys;
        }

        var (keys, problem) = await ReadAsync(uri, ct);
        if (keys is not null)
        {
            _entries[uri] = new Entry(keys, now + options.Value.KeySetRefresh);
            logger.LogInformation(ClientKeySetEvents.KeySetRead, "Client keys read from {JwksUri}: {Count} keys", uri, keys.Keys.Count);
            return keys;
        }

        logger.LogWarning(ClientKeySetEvents.KeySetUnreadable, "Client keys could not be read from {JwksUri}: {Problem}; {Fallback}", uri, problem,
            known?.Keys is null ? "the client's signatures are refused until they can" : "the keys read before still count");
        _entries[uri] = new Entry(known?.Keys, now + RetryAfterFailure);
        return known?.Keys;
    }

    /// <summary>Reads and checks the key set: 200, JSON, at most <see cref="MaxBytes"/>, every key usable (<see cref="ClientJsonWebKeys"/>).</summary>
    private async Task<(JsonWebKeySet? Keys, string? Problem)> ReadAsync(string uri, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Timeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/jwk-set+json"));
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json", 0.9));
            using var response = await httpClients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            if (response.StatusCode != System.Net.HttpStatusCode.OK)
            {
                return (null, $"it answered {(int)response.StatusCode}");
            }

            if (response.Content.Headers.ContentLength > MaxBytes)
            {
                return (null, $"it is larger than {MaxBytes} bytes");
            }

            await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
            var buffer = new byte[MaxBytes + 1];
            var length = 0;
            int read;
            while (length < buffer.Length && (read = await body.ReadAsync(buffer.AsMemory(length), timeout.Token)) > 0)
            {
                length += read;
            }

            if (length > MaxBytes)
            {
                return (null, $"it is larger than {MaxBytes} bytes");
            }

            using var document = JsonDocument.Parse(buffer.AsMemory(0, length));
            if (ClientJsonWebKeys.Problems(document.RootElement) is { Count: > 0 } problems)
            {
                return (null, $"{problems[0].Field} {problems[0].Description}");
            }

            return (JsonWebKeySet.Create(document.RootElement.GetRawText()), null);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, $"no answer within {Timeout.TotalSeconds} s");
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or ArgumentException or InvalidOperationException)
        {
            return (null, e.GetType().Name + ": " + e.Message);
        }
    }
}

/// <summary>Settings of the clients' handling (<c>Clients</c> section).</summary>
public sealed class ClientOptions
{
    public const string Section = "Clients";

    /// <summary>How long the keys read from a client's <c>jwks_uri</c> are used before it is read again (default 5 minutes).</summary>
    [System.ComponentModel.DataAnnotations.Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan KeySetRefresh { get; set; } = TimeSpan.FromMinutes(5);
}

public static class ClientKeySetEvents
{
    public static readonly EventId KeySetRead = new(5034, nameof(KeySetRead));
    public static readonly EventId KeySetUnreadable = new(5035, nameof(KeySetUnreadable));
}
