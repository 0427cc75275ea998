using IdentityServer.Accounts;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Logout;

/// <summary>
/// A client with a back-channel logout URI that a session signed in to: when the session ends, that client gets a
/// logout token. Recorded when the client is given a code (or a device is approved) through the session.
/// </summary>
public sealed class UserSessionClient
{
    public const int IssuerMaxLength = 400;

    public required string SessionId { get; init; }

    public required string ClientId { get; init; }

    /// <summary>The issuer of the identity tokens the client got, which its logout token must name too.</summary>
    public required string Issuer { get; init; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<UserSessionClient>(client =>
    {
        client.ToTable("UserSessionClients");
        client.HasKey(c => new { c.SessionId, c.ClientId });
        client.Property(c => c.SessionId).HasMaxLength(UserSession.IdLength);
        client.Property(c => c.ClientId).HasMaxLength(100);
        client.Property(c => c.Issuer).HasMaxLength(IssuerMaxLength);
        // Ending a session (deleting its row) forgets its clients.
        client.HasOne<UserSession>().WithMany().HasForeignKey(c => c.SessionId).OnDelete(DeleteBehavior.Cascade);
    });
}

/// <summary>A logout token to deliver: the session that ended, its user, and the client to tell.</summary>
public sealed record LogoutNotice(string ClientId, string Issuer, string Subject, string SessionId);
