using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts;

/// <summary>
/// The challenge of a passkey sign-in that succeeded once, kept until the sign-in it belonged to has expired anyway
/// (<see cref="ExpiresAt"/>). The primary key makes each assertion sign in once, on every instance of one database.
/// </summary>
public sealed class UsedPasskeyChallenge : Data.ISingleUseRecord
{
    /// <summary><see cref="Shared.StoredHash"/> of the challenge.</summary>
    public const int ChallengeHashLength = Shared.StoredHash.Length;

    /// <summary>The SHA-256 of the challenge as the browser signed it (base64url): one length, compared exactly under any collation.</summary>
    public required string ChallengeHash { get; init; }

    public DateTime ExpiresAt { get; set; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<UsedPasskeyChallenge>(challenge =>
    {
        challenge.ToTable("UsedPasskeyChallenges");
        challenge.HasKey(c => c.ChallengeHash);
        challenge.Property(c => c.ChallengeHash).HasMaxLength(ChallengeHashLength);
        challenge.HasIndex(c => c.ExpiresAt);
    });
}
