using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts;

/// <summary>
/// One signed-in browser, kept on the server so that signing out ends it there too: the session cookie names its row
/// (<see cref="SessionClaims.SessionId"/>), and a cookie whose row is gone is refused, a copy of it included.
/// </summary>
public sealed class UserSession
{
    public const int BrowserMaxLength = 256;
    public const int IdLength = 32;

    /// <summary>128 random bits, hex (<see cref="IdLength"/> characters).</summary>
    public required string Id { get; init; }

    public required string UserId { get; init; }

    /// <summary>UTC, as OpenIddict's own dates (SQLite compares them as text).</summary>
    public DateTime SignedInAt { get; init; }

    /// <summary>When <c>Accounts:SessionMaxLifetime</c> ends it, however active it stays: the row can go then.</summary>
    public DateTime ExpiresAt { get; init; }

    /// <summary>When the cookie was last re-issued (sliding expiration, Identity's periodic check, signing in again), so a list of sessions can leave out idle ones.</summary>
    public DateTime LastSeenAt { get; set; }

    /// <summary>How the user signed in: the session's <c>amr</c> values, space-separated.</summary>
    public required string Methods { get; init; }

    /// <summary>The <c>amr</c> values of <see cref="Methods"/>, one by one.</summary>
    public string[] MethodList() => Methods.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The browser's User-Agent at sign-in, cut to <see cref="BrowserMaxLength"/>, only for the user to recognise it.</summary>
    public string? Browser { get; init; }

    /// <summary>
    /// A User-Agent as stored: none when empty, control characters left out (PostgreSQL refuses NUL), cut to
    /// <see cref="BrowserMaxLength"/> on a whole character (half of a surrogate pair is not valid text either).
    /// </summary>
    public static string? BrowserName(string? userAgent)
    {
        var name = userAgent is null ? string.Empty : new string([.. userAgent.Where(c => !char.IsControl(c))]).Trim();
        if (name.Length > BrowserMaxLength)
        {
            name = name[..(char.IsHighSurrogate(name[BrowserMaxLength - 1]) ? BrowserMaxLength - 1 : BrowserMaxLength)];
        }

        return name.Length == 0 ? null : name;
    }

    internal static void Configure(ModelBuilder builder) => builder.Entity<UserSession>(session =>
    {
        session.ToTable("UserSessions");
        session.HasKey(s => s.Id);
        session.Property(s => s.Id).HasMaxLength(IdLength);
        session.Property(s => s.Methods).HasMaxLength(64);
        session.Property(s => s.Browser).HasMaxLength(BrowserMaxLength);
        // Deleting a user deletes their sessions.
        session.HasOne<ApplicationUser>().WithMany().HasForeignKey(s => s.UserId).OnDelete(DeleteBehavior.Cascade);
        session.HasIndex(s => s.UserId);
        session.HasIndex(s => s.ExpiresAt);
    });
}
