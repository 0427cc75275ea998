using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Clients;

/// <summary>
/// A client assertion (<c>private_key_jwt</c>) that authenticated its client once, by client and <c>jti</c>, kept until
/// the assertion could no longer be accepted anyway (<see cref="ExpiresAt"/>). The primary key is what makes it single
/// use: of the requests that present it, on any instance of one database, only the first insert succeeds.
/// </summary>
public sealed class UsedClientAssertion : IdentityServer.Data.ISingleUseRecord
{
    public const int ClientIdMaxLength = 100;

    /// <summary><see cref="Shared.StoredHash"/> of the <c>jti</c>.</summary>
    public const int JtiHashLength = Shared.StoredHash.Length;

    public required string ClientId { get; init; }

    /// <summary>
    /// The SHA-256 of the assertion's <c>jti</c>, not the <c>jti</c> itself: the same length whatever a client sends
    /// (any length, any character), and compared exactly even under a case-insensitive collation (SQL Server's default).
    /// </summary>
    public required string JtiHash { get; init; }

    /// <summary>UTC. The assertion's <c>exp</c> plus the skew OpenIddict allows after it and a margin; the row is pruned after this.</summary>
    public DateTime ExpiresAt { get; set; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<UsedClientAssertion>(assertion =>
    {
        assertion.ToTable("UsedClientAssertions");
        assertion.HasKey(a => new { a.ClientId, a.JtiHash });
        assertion.Property(a => a.ClientId).HasMaxLength(ClientIdMaxLength);
        assertion.Property(a => a.JtiHash).HasMaxLength(JtiHashLength);
        // No foreign key to the client: if it is deleted and registered again under its id, its old assertions stay used.
        assertion.HasIndex(a => a.ExpiresAt);
    });
}
