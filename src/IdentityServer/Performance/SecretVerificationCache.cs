using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace IdentityServer.Performance;

/// <summary>
/// Remembers successful client secret verifications for a short while, so the deliberately slow stored hash
/// (OpenIddict's PBKDF2) is computed once per client secret and period rather than on every token request.
/// The key is HMAC-SHA256, under a random key that exists only in this process's memory, of the stored hash and the
/// presented secret: nothing here reveals a secret, a different presented secret never matches, and a changed
/// secret (a new stored hash) never matches an old entry. Failures are never remembered, so guessing stays slow.
/// </summary>
public sealed class SecretVerificationCache(IOptions<PerformanceOptions> options, TimeProvider clock)
{
    private const int Capacity = 10_000;
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _verified = new(StringComparer.Ordinal);

    public bool Enabled => options.Value.SecretVerificationCacheLifetime > TimeSpan.Zero;

    public bool WasVerified(string storedHash, string presentedSecret) =>
        Enabled && _verified.TryGetValue(Key(storedHash, presentedSecret), out var expires) && expires > clock.GetUtcNow();

    public void Remember(string storedHash, string presentedSecret)
    {
        if (!Enabled)
        {
            return;
        }

        if (_verified.Count >= Capacity)
        {
            _verified.Clear();
        }

        _verified[Key(storedHash, presentedSecret)] = clock.GetUtcNow() + options.Value.SecretVerificationCacheLifetime;
    }

    private string Key(string storedHash, string presentedSecret)
    {
        var input = Encoding.UTF8.GetBytes($"{storedHash.Length}:{storedHash}{presentedSecret}");
        return Convert.ToBase64String(HMACSHA256.HashData(_key, input));
    }
}
