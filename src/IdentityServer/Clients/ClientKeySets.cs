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
/// signatures reads them here (its assertions, its request objects). Keys there that cannot verify signatures (an
/// encryption key) are ignored; a set with none left means the client has no keys now. When the URI cannot be read,
/// the keys read last keep working for up to <see cref="KeptWhileUnreadable"/> (the URI is tried again after
/// <see cref="RetryAfterFailure"/>); a client never read has none, so its assertions are refused (invalid_client).
/// One read per URI at a time: requests that need the keys meanwhile wait for it.
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

    /// <summary>How long keys read before stand in while the URI cannot be read: a client that removed a key must not wait forever.</summary>
    public static readonly TimeSpan KeptWhileUnreadable = TimeSpan.FromDays(1);

    /// <summary>Past this many URIs, those not read for a day are forgotten (a registrant could name new ones without end).</summary>
    private const int MaxEntries = 1000;

    /// <summary>What was read from a URI: its keys (null: none usable yet), when, and until when they are used without reading again.</summary>
    private sealed record Entry(JsonWebKeySet? Keys, DateTimeOffset ReadAt, DateTimeOffset FreshUntil);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>The read under way for each URI: requests that need it meanwhile wait for that one instead of reading it again.</summary>
    private readonly ConcurrentDictionary<string, Lazy<Task<JsonWebKeySet?>>> _reading = new(StringComparer.Ordinal);

    /// <summary>The key set published at <paramref name="uri"/>, from memory while fresh; null when none was ever read.</summary>
    public async Task<JsonWebKeySet?> GetAsync(string uri, CancellationToken ct)
    {
        if (_entries.TryGetValue(uri, out var known) && known.FreshUntil > clock.GetUtcNow())
        {
            return known.Keys;
        }

        var reading = _reading.GetOrAdd(uri, static (key, self) => new Lazy<Task<JsonWebKeySet?>>(() => self.RefreshAsync(key)), this);
        return await reading.Value.WaitAsync(ct);
    }

    /// <summary>
    /// Reads the URI once for everyone waiting, whoever of them gives up (its own timeout bounds it), and records what it
    /// found: the usable keys, or on failure the keys read before (up to <see cref="KeptWhileUnreadable"/>), tried again
    /// after <see cref="RetryAfterFailure"/>.
    /// </summary>
    private async Task<JsonWebKeySet?> RefreshAsync(string uri)
    {
        try
        {
            var now = clock.GetUtcNow();
            _entries.TryGetValue(uri, out var known);
            var (keys, ignored, problem) = await ReadAsync(uri);
            if (keys is not null)
            {
                Record(uri, new Entry(keys, now, now + options.Value.KeySetRefresh), now);
                logger.LogInformation(ClientKeySetEvents.KeySetRead, "Client keys read from {JwksUri}: {Count} keys ({Ignored} not for verifying signatures, ignored)",
                    uri, keys.Keys.Count, ignored);
                return keys;
            }

            var stillValid = known?.Keys is not null && now - known.ReadAt <= KeptWhileUnreadable ? known : null;
            logger.LogWarning(ClientKeySetEvents.KeySetUnreadable, "Client keys could not be read from {JwksUri}: {Problem}; {Fallback}", uri, problem,
                stillValid is null ? "the client's signatures are refused until they can" : "the keys read before still count");
            Record(uri, new Entry(stillValid?.Keys, stillValid?.ReadAt ?? now, now + RetryAfterFailure), now);
            return stillValid?.Keys;
        }
        finally
        {
            _reading.TryRemove(uri, out _);
        }
    }

    private void Record(string uri, Entry entry, DateTimeOffset now)
    {
        _entries[uri] = entry;
        if (_entries.Count > MaxEntries)
        {
            foreach (var (stale, _) in _entries.Where(e => now - e.Value.ReadAt > TimeSpan.FromDays(1)))
            {
                _entries.TryRemove(stale, out _);
            }
        }
    }

    /// <summary>
    /// Reads the key set: 200, JSON, at most <see cref="MaxBytes"/>. Keys that cannot verify the client's signatures
    /// (an encryption key, another key type, a malformed or private one: <see cref="ClientJsonWebKeys"/>) are ignored, as
    /// RFC 7517 section 5 asks; a set left with none is read all the same (the client has no keys now).
    /// </summary>
    private async Task<(JsonWebKeySet? Keys, int Ignored, string? Problem)> ReadAsync(string uri)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/jwk-set+json"));
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json", 0.9));
            using var response = await httpClients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            if (response.StatusCode != System.Net.HttpStatusCode.OK)
            {
                return (null, 0, $"it answered {(int)response.StatusCode}");
            }

            if (response.Content.Headers.ContentLength > MaxBytes)
            {
                return (null, 0, $"it is larger than {MaxBytes} bytes");
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
                return (null, 0, $"it is larger than {MaxBytes} bytes");
            }

            using var document = JsonDocument.Parse(buffer.AsMemory(0, length));
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("keys", out var keys)
                || keys.ValueKind != JsonValueKind.Array)
            {
                return (null, 0, "it is not a JSON Web Key Set (an object with a 'keys' array)");
            }

            var usable = keys.EnumerateArray().Where(key => ClientJsonWebKeys.KeyProblem(key) is null).ToList();
            return (JsonWebKeySet.Create(JsonSerializer.Serialize(new { keys = usable })), keys.GetArrayLength() - usable.Count, null);
        }
        catch (OperationCanceledException)
        {
            return (null, 0, $"no answer within {Timeout.TotalSeconds} s");
        }
        catch (Exception e)
        {
            // Whatever the client's server does (a reset connection, a body cut short, a bad certificate): it could not be read.
            return (null, 0, e.GetType().Name + ": " + e.Message);
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
