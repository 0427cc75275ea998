using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts.Email;

/// <summary>
/// An account email on its way out, kept in the database until it is delivered or given up on, so that neither a
/// restart nor an SMTP server that is down for a while loses it. Any instance may send it.
/// </summary>
public sealed class OutgoingEmail
{
    public const int IdLength = 32;

    /// <summary>128 random bits, hex.</summary>
    public required string Id { get; init; }

    /// <summary>For the log lines only; the message itself is in <see cref="Message"/>.</summary>
    public required string Subject { get; init; }

    /// <summary>The recipient, for the log lines only.</summary>
    public required string To { get; init; }

    /// <summary>
    /// The account the email is for: it goes with the account when that is deleted, whatever address it is to (a new
    /// one not yet confirmed, say). Null only for emails stored before the account was kept with them.
    /// </summary>
    public string? UserId { get; init; }

    /// <summary>The whole MIME message, protected with the server's data protection keys: it may hold a link that works as a password until it expires.</summary>
    public required byte[] Message { get; init; }

    /// <summary>UTC.</summary>
    public DateTime QueuedAt { get; init; }

    /// <summary>UTC: when it is next due to be sent. A sender taking it moves this a lease ahead, so no other takes it meanwhile.</summary>
    public DateTime SendAt { get; set; }

    /// <summary>Attempts begun so far; a sender takes the row by incrementing it from the value it read.</summary>
    public int Attempts { get; set; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<OutgoingEmail>(email =>
    {
        email.ToTable("OutgoingEmails");
        email.HasKey(e => e.Id);
        email.Property(e => e.Id).HasMaxLength(IdLength);
        email.Property(e => e.Subject).HasMaxLength(200);
        email.Property(e => e.To).HasMaxLength(320);
        email.HasIndex(e => e.SendAt);
        // Deleting a user deletes the emails still queued for them.
        email.HasOne<ApplicationUser>().WithMany().HasForeignKey(e => e.UserId).OnDelete(DeleteBehavior.Cascade);
    });
}
