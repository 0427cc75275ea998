using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Dpop;

/// <summary>A DPoP proof that passed every check of RFC 9449 section 4.3 but the single use of its <c>jti</c>.</summary>
/// <param name="Thumbprint">The RFC 7638 SHA-256 thumbprint of the proof's public key, base64url: what tokens are bound to (<c>jkt</c>).</param>
/// <param name="Jti">The proof's own id, used once.</param>
/// <param name="IssuedAt">The proof's <c>iat</c>.</param>
/// <param name="Nonce">The proof's <c>nonce</c>, a value the server gave (RFC 9449 section 8), if it carries one.</param>
public sealed record DpopProof(string Thumbprint, string Jti, DateTimeOffset IssuedAt, string? Nonce = null);

/// <summary>
/// Reads and checks a DPoP proof JWT (RFC 9449 section 4.3), written by hand rather than through a JWT library so that
/// nothing a proof's header asks for (a <c>kid</c>, a <c>jku</c>, a symmetric key, an embedded private key) is ever
/// followed: the only key is the public key the header carries, and only the algorithms listed here.
/// </summary>
public static class DpopProofReader
{
    /// <summary>Asymmetric algorithms only (RFC 9449 section 4.3 item 6), as discovery lists them.</summary>
    public static readonly IReadOnlyList<string> Algorithms = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"];

    /// <summary>Longer than any proof a real client sends (an RSA-4096 key and its signature included).</summary>
    private const int MaxLength = 8192;

    private const int MaxJtiLength = 256;

    private const int MinRsaKeyBits = 2048;

    /// <summary>Private members of EC and RSA keys, and a symmetric key's: a proof must never carry one.</summary>
    private static readonly string[] PrivateKeyMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

    /// <summary>
    /// Checks <paramref name="proof"/> for a request with <paramref name="method"/> to one of <paramref name="targets"/>
    /// (query and fragment ignored), issued within <paramref name="lifetime"/> before <paramref name="now"/> or
    /// <paramref name="clockSkew"/> after it, and, with an <paramref name="accessToken"/>, carrying its hash (<c>ath</c>).
    /// Returns the proof, or null with the reason in <paramref name="problem"/>.
    /// </summary>
    public static DpopProof? Read(string proof, string method, IEnumerable<Uri> targets, string? accessToken,
        DateTimeOffset now, TimeSpan lifetime, TimeSpan clockSkew, out string? problem)
    {
        problem = null;
        var parts = proof.Length <= MaxLength ? proof.Split('.') : [];
        if (parts.Length != 3 || Decode(parts[0]) is not { } headerBytes || Decode(parts[1]) is not { } payloadBytes
            || Decode(parts[2]) is not { } signature)
        {
            problem = "The DPoP proof is not a signed JWT (three base64url parts).";
            return null;
        }

        using var header = Parse(headerBytes);
        using var payload = Parse(payloadBytes);
        if (header is null || payload is null)
        {
            problem = "The DPoP proof's header or payload is not a JSON object.";
            return null;
        }

        try
        {
            return Check(header.RootElement, payload.RootElement, Encoding.ASCII.GetBytes(proof[..(parts[0].Length + 1 + parts[1].Length)]), signature,
                method, targets, accessToken, now, lifetime, clockSkew, out problem);
        }
        catch (InvalidOperationException)
        {
            // System.Text.Json parses text that is not valid UTF-8, or names that are lone surrogates, and throws only
            // when such a string or name is read.
            problem = "The DPoP proof's header or payload holds text that is not valid UTF-8.";
            return null;
        }
    }

    private static DpopProof? Check(JsonElement header, JsonElement claims, byte[] signed, byte[] signature, string method, IEnumerable<Uri> targets,
        string? accessToken, DateTimeOffset now, TimeSpan lifetime, TimeSpan clockSkew, out string? problem)
    {
        var alg = String(header, "alg");
        var jwk = default(JsonElement);
        // A typ without '/' stands for application/<typ> (RFC 7515 section 4.1.9): both spellings are the same type.
        problem = String(header, "typ") is not { } typ || !(typ.Equals("dpop+jwt", StringComparison.OrdinalIgnoreCase)
                    || typ.Equals("application/dpop+jwt", StringComparison.OrdinalIgnoreCase))
                ? "The DPoP proof's 'typ' must be 'dpop+jwt'."
            : alg is null || !Algorithms.Contains(alg) ? $"The DPoP proof's 'alg' must be one of {string.Join(", ", Algorithms)}."
            : header.TryGetProperty("crit", out _) ? "The DPoP proof's header names extensions ('crit') this server does not know."
            : !header.TryGetProperty("jwk", out jwk) || jwk.ValueKind != JsonValueKind.Object
                ? "The DPoP proof's header must carry its public key ('jwk')."
            : PrivateKeyMembers.Any(member => jwk.TryGetProperty(member, out _)) ? "The DPoP proof's 'jwk' must hold a public key only."
            : null;
        if (problem is not null)
        {
            return null;
        }

        var thumbprint = VerifySignature(alg!, jwk, signed, signature, out problem);
        if (thumbprint is null)
        {
            return null;
        }

        var jti = String(claims, "jti");
        // A NumericDate may have a fraction (RFC 7519 section 2).
        var issuedAt = claims.TryGetProperty("iat", out var iat) && iat.ValueKind == JsonValueKind.Number && iat.TryGetDouble(out var seconds)
            && seconds is >= 1 and < 253_402_300_799 ? DateTimeOffset.FromUnixTimeSeconds((long)seconds) : (DateTimeOffset?)null;
        problem = string.IsNullOrEmpty(jti) || jti.Length > MaxJtiLength ? $"The DPoP proof needs a 'jti' of 1 to {MaxJtiLength} characters."
            : String(claims, "htm") != method ? $"The DPoP proof's 'htm' must be this request's method, {method}."
            : !TargetsOneOf(String(claims, "htu"), targets) ? "The DPoP proof's 'htu' must be this endpoint's URL."
            : issuedAt is null ? "The DPoP proof needs an 'iat' (seconds since 1970)."
            : issuedAt < now - lifetime - clockSkew || issuedAt > now + clockSkew ? "The DPoP proof's 'iat' is too old or in the future."
            : accessToken is not null && String(claims, "ath") != AccessTokenHash(accessToken)
                ? "The DPoP proof's 'ath' must be the hash of the access token it comes with."
            : claims.TryGetProperty("nonce", out var nonce) && nonce.ValueKind != JsonValueKind.String ? "The DPoP proof's 'nonce' must be a string."
            : null;
        return problem is null ? new DpopProof(thumbprint, jti!, issuedAt!.Value, String(claims, "nonce")) : null;
    }

    /// <summary>base64url(SHA-256(ASCII(token))), the <c>ath</c> of RFC 9449 section 4.2.</summary>
    public static string AccessTokenHash(string accessToken) => Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(accessToken)));

    /// <summary>
    /// Verifies the signature with the header's key, for EC keys on the curve the algorithm names and RSA keys of 2048
    /// bits or more, and returns the key's thumbprint; null with the reason otherwise.
    /// </summary>
    private static string? VerifySignature(string alg, JsonElement jwk, byte[] signed, byte[] signature, out string? problem)
    {
        problem = "The DPoP proof's signature does not verify with its 'jwk'.";
        var hash = alg[2..] switch { "256" => HashAlgorithmName.SHA256, "384" => HashAlgorithmName.SHA384, _ => HashAlgorithmName.SHA512 };
        try
        {
            switch (String(jwk, "kty"))
            {
                case "EC" when alg.StartsWith("ES", StringComparison.Ordinal):
                    var (crv, x, y) = (String(jwk, "crv"), String(jwk, "x"), String(jwk, "y"));
                    var curve = crv switch { "P-256" => ECCurve.NamedCurves.nistP256, "P-384" => ECCurve.NamedCurves.nistP384, "P-521" => ECCurve.NamedCurves.nistP521, _ => (ECCurve?)null };
                    if (curve is null || crv != $"P-{(alg == "ES512" ? "521" : alg[2..])}" || Decode(x) is not { } xBytes || Decode(y) is not { } yBytes)
                    {
                        problem = $"The DPoP proof's 'jwk' must be an EC key on the curve of {alg}.";
                        return null;
                    }

                    using (var ec = ECDsa.Create(new ECParameters { Curve = curve.Value, Q = new ECPoint { X = xBytes, Y = yBytes } }))
                    {
                        return ec.VerifyData(signed, signature, hash, DSASignatureFormat.IeeeP1363FixedFieldConcatenation)
                            ? Thumbprint(("crv", crv), ("kty", "EC"), ("x", x!), ("y", y!)) : null;
                    }

                case "RSA" when !alg.StartsWith("ES", StringComparison.Ordinal):
                    var (n, e) = (String(jwk, "n"), String(jwk, "e"));
                    if (Decode(n) is not { } modulus || Decode(e) is not { } exponent
                        || new System.Numerics.BigInteger(modulus, isUnsigned: true, isBigEndian: true).GetBitLength() < MinRsaKeyBits)
                    {
                        problem = $"The DPoP proof's 'jwk' must be an RSA key of {MinRsaKeyBits} bits or more.";
                        return null;
                    }

                    using (var rsa = RSA.Create(new RSAParameters { Modulus = modulus, Exponent = exponent }))
                    {
                        var padding = alg.StartsWith("PS", StringComparison.Ordinal) ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1;
                        return rsa.VerifyData(signed, signature, hash, padding) ? Thumbprint(("e", e!), ("kty", "RSA"), ("n", n!)) : null;
                    }

                default:
                    problem = $"The DPoP proof's 'jwk' must be an {(alg.StartsWith("ES", StringComparison.Ordinal) ? "EC" : "RSA")} key for {alg}.";
                    return null;
            }
        }
        catch (CryptographicException)
        {
            problem = "The DPoP proof's 'jwk' is not a usable public key.";
            return null;
        }
    }

    /// <summary>
    /// RFC 7638: SHA-256 of the key's required members in lexicographic order, as compact JSON; the members are given
    /// here in that order.
    /// </summary>
    private static string Thumbprint(params (string Name, string Value)[] members)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var (name, value) in members)
            {
                writer.WriteString(name, value);
            }

            writer.WriteEndObject();
        }

        return Base64UrlEncoder.Encode(SHA256.HashData(buffer.ToArray()));
    }

    /// <summary>
    /// The proof's <c>htu</c> names one of the targets: same scheme, host, port and path, query and fragment ignored;
    /// the path in any case, as OpenIddict matches endpoints.
    /// </summary>
    private static bool TargetsOneOf(string? htu, IEnumerable<Uri> targets) =>
        Uri.TryCreate(htu, UriKind.Absolute, out var named) && targets.Any(target =>
            Uri.Compare(named, target, UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped, StringComparison.OrdinalIgnoreCase) == 0);

    private static string? String(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static JsonDocument? Parse(byte[] json)
    {
        try
        {
            var document = JsonDocument.Parse(json);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                return document;
            }

            document.Dispose();
            return null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static byte[]? Decode(string? base64Url)
    {
        if (string.IsNullOrEmpty(base64Url) || !Shared.Base64UrlText.IsAlphabet(base64Url))
        {
            return null;
        }

        try
        {
            return Base64UrlEncoder.DecodeBytes(base64Url);
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
