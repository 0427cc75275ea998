using IdentityServer.Data;

namespace IdentityServer.Dpop;

/// <summary>The record of used DPoP proofs, by key and <c>jti</c>.</summary>
public sealed class UsedDpopProofs(SingleUseRecords records)
{
    /// <summary>Records the first use of <paramref name="proof"/> until <paramref name="keepUntil"/>; false if it was already recorded.</summary>
    public Task<bool> TryRecordAsync(DpopProof proof, DateTimeOffset keepUntil, CancellationToken ct)
    {
        var thumbprint = proof.Thumbprint;
        var jtiHash = Shared.StoredHash.Of(proof.Jti);
        return records.TryRecordAsync(new UsedDpopProof { Thumbprint = thumbprint, JtiHash = jtiHash, ExpiresAt = keepUntil.UtcDateTime },
            p => p.Thumbprint == thumbprint && p.JtiHash == jtiHash, ct);
    }

    /// <summary>Deletes the records past their expiry (the token pruning job); their proofs are refused as too old anyway.</summary>
    public Task<int> PruneAsync(CancellationToken ct) => records.PruneAsync<UsedDpopProof>(ct);
}
