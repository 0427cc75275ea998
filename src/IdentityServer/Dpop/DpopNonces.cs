using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Dpop;

/// <summary>
/// Server-provided DPoP nonces (RFC 9449 section 8), when <c>Dpop:RequireNonce</c> is on: a client cannot make proofs
/// ahead of time, only with a nonce the server gave it lately. A nonce is the time it was made, protected with the
/// data protection keys every instance shares, so any instance accepts another's and nothing is stored.
/// </summary>
public sealed class DpopNonces(IServiceProvider services, IOptions<DpopOptions> options, TimeProvider clock)
{
    // Made on first use: the token endpoint's handlers take this service, and resolving data protection on the first
    // token request cost about a tenth of the cold start (150 ms) on servers that never require nonces.
    private readonly Lazy<IDataProtector> _protector = new(() =>
        services.GetRequiredService<IDataProtectionProvider>().CreateProtector("IdentityServer.Dpop.Nonce.v1"));

    public bool Required => options.Value.RequireNonce;

    /// <summary>
    /// With nonces required, gives a fresh one in the answer's <c>DPoP-Nonce</c> header when the request carried a proof
    /// (or, <paramref name="refusedForProof"/>, was refused for want of a good one), so the client's next proof can carry it.
    /// </summary>
    public void GiveWithAnswer(HttpContext http, bool refusedForProof = false)
    {
        if (Required && (refusedForProof || http.Request.Headers.ContainsKey(DpopServerHandlers.HeaderName)))
        {
            http.Response.Headers[DpopServerHandlers.NonceHeaderName] = Issue();
        }
    }

    /// <summary>A fresh nonce, for the <c>DPoP-Nonce</c> response header.</summary>
    public string Issue()
    {
        Span<byte> madeAt = stackalloc byte[sizeof(long)];
        BinaryPrimitives.WriteInt64BigEndian(madeAt, clock.GetUtcNow().ToUnixTimeSeconds());
        return Base64UrlEncoder.Encode(_protector.Value.Protect(madeAt.ToArray()));
    }

    /// <summary>Whether <paramref name="nonce"/> is one of ours, made within <c>Dpop:NonceLifetime</c> (give or take <c>Dpop:ClockSkew</c>, for instances' clocks).</summary>
    public bool IsCurrent(string? nonce)
    {
        if (string.IsNullOrEmpty(nonce) || nonce.Length > 512)
        {
            return false;
        }

        byte[] madeAt;
        try
        {
            madeAt = _protector.Value.Unprotect(Base64UrlEncoder.DecodeBytes(nonce));
        }
        catch (Exception e) when (e is CryptographicException or FormatException or ArgumentException)
        {
            return false;
        }

        if (madeAt.Length != sizeof(long))
        {
            return false;
        }

        var age = clock.GetUtcNow() - DateTimeOffset.FromUnixTimeSeconds(BinaryPrimitives.ReadInt64BigEndian(madeAt));
        return age <= options.Value.NonceLifetime + options.Value.ClockSkew && age >= -options.Value.ClockSkew;
    }
}
