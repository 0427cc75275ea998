using System.Text.Json.Serialization;
using IdentityServer.Accounts;
using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;

namespace IdentityServer.Admin;

/// <summary>A user's login session as the admin API shows it (<see cref="UserSession"/>).</summary>
public sealed record SessionView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("signed_in_at")] DateTimeOffset SignedInAt,
    [property: JsonPropertyName("last_active_at")] DateTimeOffset LastActiveAt,
    [property: JsonPropertyName("expires_at")] DateTimeOffset ExpiresAt,
    [property: JsonPropertyName("amr")] IReadOnlyList<string> Methods,
    [property: JsonPropertyName("browser")] string? Browser)
{
    public static SessionView From(UserSession session) => new(session.Id,
        new DateTimeOffset(session.SignedInAt, TimeSpan.Zero), new DateTimeOffset(session.LastSeenAt, TimeSpan.Zero),
        new DateTimeOffset(session.ExpiresAt, TimeSpan.Zero), session.MethodList(), session.Browser);
}

/// <summary>
/// An admin's view of a user's login sessions: list them, end one (its cookie is refused at its next request), or end
/// them all as the user's own "sign out everywhere" does (a new security stamp, every row deleted, every token of the
/// user revoked). Each end is audited.
/// </summary>
public sealed class UserSessionAdmin(
    UserManager<ApplicationUser> users, UserSessions sessions, SecurityStamps stamps, IOpenIddictTokenManager tokens, AuditLog audit)
{
    public async Task<AdminResult<IReadOnlyList<SessionView>>> ListAsync(string userId, CancellationToken ct) =>
        await users.FindByIdAsync(userId) is { } user
            ? AdminResult<IReadOnlyList<SessionView>>.Ok(await ViewsAsync(user, ct))
            : NoUser(userId);

    public Task<AdminResult<IReadOnlyList<SessionView>>> EndAsync(string userId, string sessionId, AdminActor actor, CancellationToken ct) =>
        audit.InTransactionAsync(async transaction =>
        {
            if (await users.FindByIdAsync(userId) is not { } user)
            {
                return NoUser(userId);
            }

            // The row itself, not the list: a session the list leaves out as idle may still be live.
            if (await sessions.FindAsync(user.Id, sessionId, ct) is not { } ended || await sessions.EndAsync(user.Id, sessionId, ct) == 0)
            {
                return AdminResult<IReadOnlyList<SessionView>>.NotFound($"User '{userId}' has no session '{sessionId}'.");
            }

            audit.Record(actor, AuditAction.UserSessionEnded, user.Id, before: SessionView.From(ended), after: null);
            await audit.CommitAsync(transaction, ct);
            return AdminResult<IReadOnlyList<SessionView>>.Ok(await ViewsAsync(user, ct));
        }, ct);

    /// <summary>Revokes tokens too, so it runs in <see cref="AuditLog.InTransactionAsync{T}"/>, which retries after a deadlock with token writes.</summary>
    public Task<AdminResult<IReadOnlyList<SessionView>>> EndAllAsync(string userId, AdminActor actor, CancellationToken ct) =>
        audit.InTransactionAsync(async transaction =>
        {
            if (await users.FindByIdAsync(userId) is not { } user)
            {
                return NoUser(userId);
            }

            var before = await ViewsAsync(user, ct);
            // The user or another admin may end the sessions at the same moment: any new stamp ends every session.
            await stamps.RenewAsync(user, ct);

            await sessions.EndAllAsync(user.Id, keep: null, ct);
            await tokens.RevokeBySubjectAsync(user.Id, ct);
            audit.Record(actor, AuditAction.UserSessionsEnded, user.Id, before: new { sessions = before }, after: null);
            await audit.CommitAsync(transaction, ct);
            return AdminResult<IReadOnlyList<SessionView>>.Ok([]);
        }, ct);

    private async Task<IReadOnlyList<SessionView>> ViewsAsync(ApplicationUser user, CancellationToken ct) =>
        [.. (await sessions.ListAsync(user.Id, ct)).Select(SessionView.From)];

    private static AdminResult<IReadOnlyList<SessionView>> NoUser(string userId) =>
        AdminResult<IReadOnlyList<SessionView>>.NotFound($"There is no user with id '{userId}'.");
}
