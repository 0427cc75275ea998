using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Dpop;

/// <summary>
/// A DPoP proof that was accepted once, by its key's thumbprint and its <c>jti</c> (RFC 9449 section 11.1), kept until its
/// <c>iat</c> is too old for it to be accepted anyway. The primary key makes it single use on every instance of one
/// database.
/// </summary>
public sealed class UsedDpopProof : ISingleUseRecord
{
    /// <summary>An RFC 7638 SHA-256 thumbprint, base64url.</summary>
    public const int ThumbprintLength = Shared.Base64UrlText.Sha256Length;

    /// <summary><see cref="Shared.StoredHash"/> of the <c>jti</c>.</summary>
    public const int JtiHashLength = Shared.StoredHash.Length;

    public required string Thumbprint { get; init; }

    /// <summary>The SHA-256 of the proof's <c>jti</c>: one length whatever the client sends, compared exactly under any collation.</summary>
    public required string JtiHash { get; init; }

    public DateTime ExpiresAt { get; set; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<UsedDpopProof>(proof =>
    {
        proof.ToTable("UsedDpopProofs");
        proof.HasKey(p => new { p.Thumbprint, p.JtiHash });
        proof.Property(p => p.Thumbprint).HasMaxLength(ThumbprintLength);
        proof.Property(p => p.JtiHash).HasMaxLength(JtiHashLength);
        proof.HasIndex(p => p.ExpiresAt);
    });
}
