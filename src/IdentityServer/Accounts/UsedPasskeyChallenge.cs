using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts;

/// <summary>
/// The sign-in state (the challenge) of a passkey sign-in that succeeded once, kept until that sign-in has expired anyway
/// (<see cref="ExpiresAt"/>). The primary key makes each assertion sign in once, on every instance of one database.
/// </summary>
public sealed class UsedPasskeyChallenge : Data.ISingleUseRecord
{
    /// <summary><see cref="Shared.StoredHash"/> of the sign-in state.</summary>
    public const int ChallengeHashLength = Shared.StoredHash.Length;

    /// <summary>
    /// The SHA-256 of the sign-in state Identity verified the assertion against (which holds the challenge it issued):
    /// one length, compared exactly under any collation.
    /// </summary>
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
