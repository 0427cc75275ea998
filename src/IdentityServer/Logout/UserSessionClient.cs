using IdentityServer.Accounts;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Logout;

/// <summary>
/// A client with a back-channel or front-channel logout URI that a session signed in to, recorded when the client is
/// given a code (or a device is approved) through the session. When the session ends, a back-channel client's row
/// becomes its logout token to send (<see cref="NotifyAt"/> set, in the transaction that ends the session), and stays
/// until the token is delivered or given up on: a logout is not lost when the server stops before sending it, and every
/// instance can send it. The sign-out page reads the rows of its session for the front-channel frames it shows.
/// </summary>
public sealed class UserSessionClient
{
    public const int IssuerMaxLength = 400;

    public required string SessionId { get; init; }

    public required string ClientId { get; init; }

    /// <summary>The session's user (the logout token's <c>sub</c>), kept here because the session's row, and the user's, may be gone by the time it is sent.</summary>
    public required string UserId { get; init; }

    /// <summary>The issuer of the identity tokens the client got, which its logout token must name too.</summary>
    public required string Issuer { get; init; }

    /// <summary>UTC. A row whose session is gone and which was never due is left over from a session that expired: pruned after a while.</summary>
    public DateTime RecordedAt { get; init; }

    /// <summary>
    /// Null while the session lives. Once it has ended: when the logout token is next due to be sent (UTC). A sender
    /// taking it moves it forward by a lease, so that no other sender takes it meanwhile, nor after a crash for long.
    /// </summary>
    public DateTime? NotifyAt { get; set; }

    /// <summary>Posts begun so far; a sender takes the row by incrementing it from the value it read.</summary>
    public int Attempts { get; set; }

    /// <summary>
    /// The client had a front-channel logout URI only when it was recorded: no logout token is sent to it, and the row is
    /// forgotten with its session (false for the rows recorded before front-channel logout, which were all back-channel).
    /// </summary>
    public bool FrontChannelOnly { get; init; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<UserSessionClient>(client =>
    {
        client.ToTable("UserSessionClients");
        client.HasKey(c => new { c.SessionId, c.ClientId });
        client.Property(c => c.SessionId).HasMaxLength(UserSession.IdLength);
        client.Property(c => c.ClientId).HasMaxLength(100);
        client.Property(c => c.UserId).HasMaxLength(450);
        client.Property(c => c.Issuer).HasMaxLength(IssuerMaxLength);
        // No foreign key to the session: its row is deleted as it ends, and this one must outlive it until sent.
        client.HasIndex(c => c.NotifyAt);
    });
}

/// <summary>A logout token to deliver: the session that ended, its user, and the client to tell.</summary>
public sealed record LogoutNotice(string ClientId, string Issuer, string Subject, string SessionId);
