using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Admin;

/// <summary>One admin change: who made it, what it changed, when, and the entry before and after (never a secret).</summary>
public sealed class AuditEntry
{
    /// <summary>Increasing: the order entries were written in, and the cursor for paging back through them.</summary>
    public long Id { get; set; }

    public DateTimeOffset OccurredAt { get; set; }

    /// <summary><c>user</c> (a person in the admin role) or <c>client</c> (a machine client with the admin scope).</summary>
    public required string ActorType { get; set; }

    /// <summary>The user's id, or the client's client_id.</summary>
    public required string ActorId { get; set; }

    public string? ActorName { get; set; }

    /// <summary>The client a user's bearer token was issued to, if the change came through one.</summary>
    public string? ActorClientId { get; set; }

    /// <summary>What happened, as <c>target.verb</c>: <c>client.created</c>, <c>user.password_reset</c>, ...</summary>
    public required string Action { get; set; }

    /// <summary><c>client</c>, <c>scope</c>, <c>user</c> or <c>role</c>.</summary>
    public required string TargetType { get; set; }

    /// <summary>The client_id, scope name, user id or role name.</summary>
    public required string TargetId { get; set; }

    /// <summary>The entry before the change as JSON (null for a creation); secrets and password hashes are never included.</summary>
    public string? Before { get; set; }

    /// <summary>The entry after the change as JSON (null for a deletion).</summary>
    public string? After { get; set; }

    /// <summary>The request's trace identifier, to find the matching log lines.</summary>
    public string? RequestId { get; set; }

    internal static void Configure(ModelBuilder builder) => builder.Entity<AuditEntry>(entry =>
    {
        entry.ToTable("AuditEntries");
        entry.HasKey(e => e.Id);
        entry.Property(e => e.ActorType).HasMaxLength(16);
        entry.Property(e => e.ActorId).HasMaxLength(256);
        entry.Property(e => e.ActorName).HasMaxLength(256);
        entry.Property(e => e.ActorClientId).HasMaxLength(256);
        entry.Property(e => e.Action).HasMaxLength(64);
        entry.Property(e => e.TargetType).HasMaxLength(16);
        entry.Property(e => e.TargetId).HasMaxLength(256);
        entry.Property(e => e.RequestId).HasMaxLength(128);
        entry.HasIndex(e => new { e.TargetType, e.TargetId });
    });
}
