using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text.Json;

namespace IdentityServer.Clients;

/// <summary>
/// The checks on a private_key_jwt client's <c>jwks</c>: every key must be a public key that can verify the client's
/// signed assertions, or the client could never authenticate. Problems name the key: <c>jwks.keys[0]</c>.
/// </summary>
public static class ClientJsonWebKeys
{
    public const int MinRsaModulusBits = 2048;

    /// <summary>Above this, key generation and verification cost too much for any real client key.</summary>
    public const int MaxRsaModulusBits = 16384;

    private static readonly string[] PrivateMembers = ["d", "p", "q", "dp", "dq", "qi", "k"];

    private static readonly string[] RsaAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

    /// <summary>Each supported curve: its name, coordinate length in bytes and the one algorithm it signs with (RFC 7518 3.4).</summary>
    private static readonly Dictionary<string, (ECCurve Curve, int Size, string Algorithm)> Curves = new(StringComparer.Ordinal)
    {
        ["P-256"] = (ECCurve.NamedCurves.nistP256, 32, "ES256"),
        ["P-384"] = (ECCurve.NamedCurves.nistP384, 48, "ES384"),
        ["P-521"] = (ECCurve.NamedCurves.nistP521, 66, "ES512"),
    };

    /// <summary>The problems of a key set, as (field, description); none if every key is usable.</summary>
    public static IReadOnlyList<(string Field, string Description)> Problems(JsonElement jwks)
    {
        if (jwks.ValueKind != JsonValueKind.Object || !jwks.TryGetProperty("keys", out var keys) || keys.ValueKind != JsonValueKind.Array
            || keys.GetArrayLength() == 0)
        {
            return [("jwks", "must be a JSON Web Key Set: an object with a non-empty 'keys' array.")];
        }

        var problems = new List<(string, string)>();
        var index = 0;
        foreach (var key in keys.EnumerateArray())
        {
            if (KeyProblem(key) is { } problem)
            {
                problems.Add(($"jwks.keys[{index}]", problem));
            }

            index++;
        }

        return problems;
    }

    /// <summary>Why one key cannot verify the client's signatures; null when it can.</summary>
    public static string? KeyProblem(JsonElement key)
    {
        if (key.ValueKind != JsonValueKind.Object)
        {
            return "must be a JSON Web Key object.";
        }

        // The client keeps its private key; one sent here has leaked and must not be stored.
        if (PrivateMembers.Where(m => key.TryGetProperty(m, out _)).ToList() is { Count: > 0 } present)
        {
            return $"holds private key material ({string.Join(", ", present)}): give the public key only and keep the private key on the client.";
        }

        if (!key.TryGetProperty("kty", out var ktyValue) || ktyValue.ValueKind != JsonValueKind.String)
        {
            return "'kty' is required: RSA or EC.";
        }

        var kty = ktyValue.GetString();
        if (kty is not ("RSA" or "EC"))
        {
            return $"'kty' '{kty}' is not supported: client assertions are verified with RSA or EC public keys.";
        }

        if (key.TryGetProperty("use", out var use) && !(use.ValueKind == JsonValueKind.String && use.GetString() == "sig"))
        {
            return "'use' must be 'sig' (or absent): the key verifies the client's signed assertions.";
        }

        if (key.TryGetProperty("key_ops", out var ops)
            && !(ops.ValueKind == JsonValueKind.Array && ops.EnumerateArray().Any(o => o.ValueKind == JsonValueKind.String && o.GetString() == "verify")))
        {
            return "'key_ops' must include 'verify' (or be absent): the key verifies the client's signed assertions.";
        }

        string? alg = null;
        if (key.TryGetProperty("alg", out var algValue))
        {
            if (algValue.ValueKind != JsonValueKind.String)
            {
                return "'alg' must be a string.";
            }

            alg = algValue.GetString();
        }

        return kty == "RSA" ? RsaProblem(key, alg) : EcProblem(key, alg);
    }

    private static string? RsaProblem(JsonElement key, string? alg)
    {
        if (alg is not null && !RsaAlgorithms.Contains(alg))
        {
            return $"'alg' '{alg}' does not sign with an RSA key; use one of {string.Join(", ", RsaAlgorithms)} (or leave it out).";
        }

        if (Base64UrlMember(key, "n", out var modulus) is { } nProblem)
        {
            return nProblem;
        }

        if (Base64UrlMember(key, "e", out var exponent) is { } eProblem)
        {
            return eProblem;
        }

        var bits = BitLength(modulus);
        if (bits is < MinRsaModulusBits or > MaxRsaModulusBits)
        {
            return $"the RSA modulus 'n' has {bits} bits; it must have {MinRsaModulusBits} to {MaxRsaModulusBits}.";
        }

        // 'e' is a small odd number in every real key (usually 65537); other values cannot come from a key pair.
        var e = exponent.AsSpan().TrimStart((byte)0);
        if (e.Length is 0 or > 4 || (e[^1] & 1) == 0 || (e.Length == 1 && e[0] < 3))
        {
            return "the RSA exponent 'e' must be an odd number from 3 to 2^32 - 1 (usually AQAB, 65537).";
        }

        try
        {
            using var rsa = RSA.Create(new RSAParameters { Modulus = modulus.AsSpan().TrimStart((byte)0).ToArray(), Exponent = e.ToArray() });
        }
        catch (CryptographicException)
        {
            return "'n' and 'e' do not form a usable RSA public key.";
        }

        return null;
    }

    private static string? EcProblem(JsonElement key, string? alg)
    {
        if (!key.TryGetProperty("crv", out var crvValue) || crvValue.ValueKind != JsonValueKind.String
            || !Curves.TryGetValue(crvValue.GetString()!, out var curve))
        {
            return $"'crv' must be one of {string.Join(", ", Curves.Keys)}.";
        }

        var crv = crvValue.GetString();
        if (alg is not null && alg != curve.Algorithm)
        {
            return $"'alg' '{alg}' does not sign with a {crv} key; use {curve.Algorithm} (or leave it out).";
        }

        if (Base64UrlMember(key, "x", out var x) is { } xProblem)
        {
            return xProblem;
        }

        if (Base64UrlMember(key, "y", out var y) is { } yProblem)
        {
            return yProblem;
        }

        // RFC 7518 6.2.1.2: the coordinates are the full size of the curve, leading zeros kept.
        if (x.Length != curve.Size || y.Length != curve.Size)
        {
            return $"'x' and 'y' must each be {curve.Size} bytes for {crv} (they are {x.Length} and {y.Length}).";
        }

        try
        {
            // Importing checks that (x, y) is a point of the curve.
            using var ecdsa = ECDsa.Create(new ECParameters { Curve = curve.Curve, Q = new ECPoint { X = x, Y = y } });
        }
        catch (CryptographicException)
        {
            return $"'x' and 'y' are not a point of the curve {crv}.";
        }

        return null;
    }

    /// <summary>A required base64url member (RFC 7515 2: the URL-safe alphabet, no padding), decoded.</summary>
    private static string? Base64UrlMember(JsonElement key, string name, out byte[] value)
    {
        value = [];
        if (!key.TryGetProperty(name, out var member) || member.ValueKind != JsonValueKind.String || member.GetString() is not { Length: > 0 } text)
        {
            return $"'{name}' is required.";
        }

        if (text.Length % 4 == 1 || !Shared.Base64UrlText.IsAlphabet(text))
        {
            return $"'{name}' is not valid base64url (the URL-safe alphabet, without padding).";
        }

        try
        {
            value = Base64Url.DecodeFromChars(text);
            return null;
        }
        catch (FormatException)
        {
            return $"'{name}' is not valid base64url (the URL-safe alphabet, without padding).";
        }
    }

    private static int BitLength(byte[] bigEndian)
    {
        var significant = bigEndian.AsSpan().TrimStart((byte)0);
        return significant.Length == 0 ? 0 : ((significant.Length - 1) * 8) + (32 - int.LeadingZeroCount(significant[0]));
    }
}
