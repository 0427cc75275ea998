using System.ComponentModel.DataAnnotations;

namespace IdentityServer.Dpop;

/// <summary>How fresh a DPoP proof must be, and whether it must carry a nonce of ours (configuration section <c>Dpop</c>).</summary>
public sealed class DpopOptions
{
    public const string Section = "Dpop";

    /// <summary>How long after its <c>iat</c> a proof is accepted. Each proof is used once, so this bounds only how long its record is kept.</summary>
    [Range(typeof(TimeSpan), "00:00:05", "00:10:00")]
    public TimeSpan ProofLifetime { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How far a client's clock may be off either way: a proof's <c>iat</c> may be this far in the future, and this much older than the lifetime.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Every proof must carry a nonce this server gave (RFC 9449 section 8): a proof without one, or with an old one, is
    /// answered <c>use_dpop_nonce</c> with a fresh nonce in the <c>DPoP-Nonce</c> header, which the client then puts in a new proof.
    /// Off by default: it costs a client one more round trip each time its nonce has expired.
    /// </summary>
    public bool RequireNonce { get; set; }

    /// <summary>How long a nonce is accepted after it was given.</summary>
    [Range(typeof(TimeSpan), "00:00:10", "1.00:00:00")]
    public TimeSpan NonceLifetime { get; set; } = TimeSpan.FromMinutes(5);
}
