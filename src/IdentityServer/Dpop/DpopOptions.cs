using System.ComponentModel.DataAnnotations;

namespace IdentityServer.Dpop;

/// <summary>How fresh a DPoP proof must be (configuration section <c>Dpop</c>).</summary>
public sealed class DpopOptions
{
    public const string Section = "Dpop";

    /// <summary>How long after its <c>iat</c> a proof is accepted. Each proof is used once, so this bounds only how long its record is kept.</summary>
    [Range(typeof(TimeSpan), "00:00:05", "00:10:00")]
    public TimeSpan ProofLifetime { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How far a client's clock may be off either way: a proof's <c>iat</c> may be this far in the future, and this much older than the lifetime.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);
}
