using System.Text.Json.Serialization;
using IdentityServer.Accounts;
using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using OpenIddict.Abstractions;

namespace IdentityServer.Admin;

/// <summary>A user as an admin writes it: to create one (with or without a password), or to replace its editable fields.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class UserDocument
{
    /// <summary>Set when the user is created; it cannot be changed afterwards.</summary>
    [JsonPropertyName("user_name")]
    public string? UserName { get; set; }

    [JsonPropertyName("email")]
    public string? Email { get; set; }

    [JsonPropertyName("email_verified")]
    public bool EmailVerified { get; set; }

    /// <summary>Existing role names; the user is given exactly these.</summary>
    [JsonPropertyName("roles")]
    public List<string> Roles { get; set => field = value ?? []; } = [];

    /// <summary>The user cannot sign in until then (UTC); null or past to unlock.</summary>
    [JsonPropertyName("lockout_end")]
    public DateTimeOffset? LockoutEnd { get; set; }

    /// <summary>Write-only, on creation only (use the password endpoint afterwards); must meet the password policy.</summary>
    [JsonPropertyName("password")]
    public string? Password { get; set; }

    // The read-only fields of UserView, taken so that what a GET answered can be sent back as a PUT: each must
    // describe the user as it is (or as the request leaves it), so a script that thought it could set one is told so.

    /// <summary>Read-only: on replace, the id in the path; left out on creation (the server gives it).</summary>
    [JsonPropertyName("id")]
    public string? Id { get; set; }

    /// <summary>Read-only: follows <c>lockout_end</c>.</summary>
    [JsonPropertyName("locked_out")]
    public bool? LockedOut { get; set; }

    /// <summary>Read-only: set with <c>password</c> on creation or the password endpoint afterwards.</summary>
    [JsonPropertyName("has_password")]
    public bool? HasPassword { get; set; }
}

/// <summary>A new password set by an admin.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class PasswordDocument
{
    [JsonPropertyName("password")]
    public string? Password { get; set; }
}

/// <summary>A user as the admin API shows it: never a password, its hash, or a security stamp.</summary>
public sealed record UserView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("user_name")] string? UserName,
    [property: JsonPropertyName("email")] string? Email,
    [property: JsonPropertyName("email_verified")] bool EmailVerified,
    [property: JsonPropertyName("roles")] IReadOnlyList<string> Roles,
    [property: JsonPropertyName("lockout_end")] DateTimeOffset? LockoutEnd,
    [property: JsonPropertyName("locked_out")] bool LockedOut,
    [property: JsonPropertyName("has_password")] bool HasPassword);

/// <summary>
/// Managing people's accounts through ASP.NET Core Identity, so its validators (user name, email, password policy)
/// apply. Locking a user out, resetting a password or deleting a user also revokes the user's tokens, and at least
/// one active user always keeps the admin role.
/// </summary>
public sealed class UserAdmin(
    ApplicationDbContext db,
    UserManager<ApplicationUser> users,
    IOpenIddictAuthorizationManager authorizations,
    IOpenIddictTokenManager tokens,
    UserSessions sessionRows,
    SecurityStamps stamps,
    TimeProvider clock,
    AuditLog audit)
{
    public async Task<PageOf<UserView>> ListAsync(string? search, int? page, int? pageSize, CancellationToken ct)
    {
        var (number, size) = PageOf<UserView>.Normalize(page, pageSize);
        var query = db.Users.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim().ToUpperInvariant();
            query = query.Where(u => u.NormalizedUserName!.Contains(term) || (u.NormalizedEmail != null && u.NormalizedEmail.Contains(term)));
        }

        var (found, total) = await query.OrderBy(u => u.NormalizedUserName).PageAsync(number, size, ct);
        var ids = found.Select(u => u.Id).ToList();
        var rolesByUser = (await (from userRole in db.UserRoles
                                  join role in db.Roles on userRole.RoleId equals role.Id
                                  where ids.Contains(userRole.UserId)
                                  select new { userRole.UserId, role.Name }).ToListAsync(ct))
            .ToLookup(r => r.UserId, r => r.Name!);
        return new PageOf<UserView>([.. found.Select(u => View(u, [.. rolesByUser[u.Id].Order(StringComparer.Ordinal)]))], total, number, size);
    }

    /// <summary>The external providers (entry names) each of <paramref name="userIds"/> signs in with, in one query: the users list's column.</summary>
    public async Task<ILookup<string, string>> ProvidersOfAsync(IReadOnlyCollection<string> userIds, CancellationToken ct) =>
        (await db.UserLogins.AsNoTracking().Where(l => userIds.Contains(l.UserId)).Select(l => new { l.UserId, l.LoginProvider }).ToListAsync(ct))
            .ToLookup(l => l.UserId, l => l.LoginProvider);

    public async Task<AdminResult<UserView>> GetAsync(string id, CancellationToken ct) =>
        await users.FindByIdAsync(id) is { } user
            ? AdminResult<UserView>.Ok(await ViewAsync(user), ETags.Format(user.ConcurrencyStamp))
            : NotFound(id);

    public async Task<IReadOnlyList<string>> RoleNamesAsync(CancellationToken ct) =>
        await db.Roles.AsNoTracking().Select(r => r.Name!).OrderBy(n => n).ToListAsync(ct);

    public async Task<AdminResult<UserView>> CreateAsync(UserDocument document, AdminActor actor, CancellationToken ct)
    {
        var errors = await ValidateAsync(document, creating: true, ct);
        errors.AddRange(ReadOnlyFieldErrors(document, current: null));
        if (errors.Count > 0)
        {
            return AdminResult<UserView>.Invalid(errors);
        }

        await using var transaction = await audit.BeginAsync(ct);
        var user = new ApplicationUser
        {
            UserName = document.UserName!.Trim(),
            Email = Blank(document.Email),
            EmailConfirmed = document.EmailVerified,
            LockoutEnabled = true,
            LockoutEnd = document.LockoutEnd?.ToUniversalTime(),
        };

        IdentityResult created;
        try
        {
            created = string.IsNullOrEmpty(document.Password) ? await users.CreateAsync(user) : await users.CreateAsync(user, document.Password);
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            return AdminResult<UserView>.Conflict("user_name", $"user '{document.UserName}' already exists.");
        }

        if (!created.Succeeded)
        {
            return Failure(created);
        }

        if (document.Roles.Count > 0 && await users.AddToRolesAsync(user, document.Roles.Distinct()) is { Succeeded: false } added)
        {
            return Failure(added);
        }

        var view = await ViewAsync(user);
        audit.Record(actor, AuditAction.UserCreated, user.Id, before: null, after: view);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<UserView>.Created(view, ETags.Format(user.ConcurrencyStamp));
    }

    /// <summary>Replaces the editable fields: email, email_verified, roles and lockout_end.</summary>
    public Task<AdminResult<UserView>> UpdateAsync(string id, UserDocument document, string? ifMatch, AdminActor actor, CancellationToken ct) =>
        ChangeAsync(ifMatch, transaction => UpdateAsync(transaction, id, document, ifMatch, actor, ct), ct);

    public Task<AdminResult<UserView>> DeleteAsync(string id, string? ifMatch, AdminActor actor, CancellationToken ct) =>
        ChangeAsync(ifMatch, transaction => DeleteAsync(transaction, id, ifMatch, actor, ct), ct);

    /// <summary>Sets a new password (it must meet the policy); the user's sessions end and their tokens are revoked.</summary>
    public Task<AdminResult<UserView>> ResetPasswordAsync(string id, string? password, string? ifMatch, AdminActor actor, CancellationToken ct) =>
        ChangeAsync(ifMatch, transaction => ResetPasswordAsync(transaction, id, password, ifMatch, actor, ct), ct);

    // Each of the three changes above can revoke the user's tokens, so each runs in InTransactionAsync, which runs it
    // again if the database aborts it to break a deadlock with token writes in flight.

    /// <summary>
    /// Runs a change in its transaction. Without If-Match a change is unconditional, so one that lost Identity's
    /// concurrency check to a change made at the same moment (the user signing in, an admin ending their sessions) is
    /// made again on top of it, rather than answered 412.
    /// </summary>
    private async Task<AdminResult<UserView>> ChangeAsync(string? ifMatch, Func<IDbContextTransaction, Task<AdminResult<UserView>>> change,
        CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var result = await audit.InTransactionAsync(change, ct);
            if (result.Outcome != AdminOutcome.PreconditionFailed || ifMatch is not null || attempt == 3)
            {
                return result;
            }

            db.ChangeTracker.Clear();
        }
    }

    private async Task<AdminResult<UserView>> UpdateAsync(IDbContextTransaction transaction, string id, UserDocument document, string? ifMatch,
        AdminActor actor, CancellationToken ct)
    {
        if (document.Id is not null && document.Id != id)
        {
            return AdminResult<UserView>.Invalid("id", $"is '{document.Id}', but the path names user '{id}': a user's id cannot be changed.");
        }

        var user = await users.FindByIdAsync(id);
        if (user is null)
        {
            return NotFound(id);
        }

        if (!ETags.Matches(ifMatch, user.ConcurrencyStamp))
        {
            return AdminResult<UserView>.Stale(ETags.Format(user.ConcurrencyStamp));
        }

        var before = await ViewAsync(user);
        var errors = await ValidateAsync(document, creating: false, ct);
        if (document.UserName is not null && !string.Equals(document.UserName, user.UserName, StringComparison.Ordinal))
        {
            errors.Add(FieldError.Request("user_name", "cannot be changed."));
        }

        errors.AddRange(ReadOnlyFieldErrors(document, before));
        if (errors.Count > 0)
        {
            return AdminResult<UserView>.Invalid(errors);
        }

        var locking = IsLockedOut(document.LockoutEnd) && !before.LockedOut;
        if ((locking || !document.Roles.Contains(AdminApi.Role)) && await IsLastActiveAdminAsync(user, before))
        {
            return LastAdmin();
        }

        user.Email = Blank(document.Email);
        user.EmailConfirmed = document.EmailVerified;
        user.LockoutEnd = document.LockoutEnd?.ToUniversalTime(); // PostgreSQL stores timestamptz in UTC only
        user.LockoutEnabled = true;
        var updated = await users.UpdateAsync(user);
        if (!updated.Succeeded)
        {
            return Failure(updated);
        }

        var current = before.Roles.ToHashSet(StringComparer.Ordinal);
        var wanted = document.Roles.ToHashSet(StringComparer.Ordinal);
        if (current.Except(wanted).ToList() is { Count: > 0 } removed && await users.RemoveFromRolesAsync(user, removed) is { Succeeded: false } r)
        {
            return Failure(r);
        }

        if (wanted.Except(current).ToList() is { Count: > 0 } added && await users.AddToRolesAsync(user, added) is { Succeeded: false } a)
        {
            return Failure(a);
        }

        if (locking)
        {
            // Locked out means out now: sessions end at their next check and the user's tokens stop working.
            await stamps.RenewAsync(user, ct);
            await RevokeAsync(user, ct);
        }

        var view = await ViewAsync(user);
        audit.Record(actor, AuditAction.UserUpdated, user.Id, before, view);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<UserView>.Ok(view, ETags.Format(user.ConcurrencyStamp));
    }

    private async Task<AdminResult<UserView>> DeleteAsync(IDbContextTransaction transaction, string id, string? ifMatch, AdminActor actor, CancellationToken ct)
    {
        var user = await users.FindByIdAsync(id);
        if (user is null)
        {
            return NotFound(id);
        }

        if (!ETags.Matches(ifMatch, user.ConcurrencyStamp))
        {
            return AdminResult<UserView>.Stale(ETags.Format(user.ConcurrencyStamp));
        }

        var before = await ViewAsync(user);
        if (await IsLastActiveAdminAsync(user, before))
        {
            return LastAdmin();
        }

        // Before the user goes (the deletion would take the sessions' rows with it), so their clients are told.
        await RevokeAsync(user, ct);
        var deleted = await users.DeleteAsync(user);
        if (!deleted.Succeeded)
        {
            return Failure(deleted);
        }

        // Emails still queued for the account (a reset link, a notice, a link to a new address not yet confirmed) went
        // with it, by their foreign key: their links no longer work, and the addresses are the person's data. Those
        // stored before emails kept their account are found by its address.
        if (!string.IsNullOrEmpty(user.Email))
        {
            await db.Set<Accounts.Email.OutgoingEmail>().Where(e => e.UserId == null && e.To == user.Email).ExecuteDeleteAsync(ct);
        }

        audit.Record(actor, AuditAction.UserDeleted, user.Id, before, after: null);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<UserView>.Ok(before);
    }

    private async Task<AdminResult<UserView>> ResetPasswordAsync(IDbContextTransaction transaction, string id, string? password, string? ifMatch,
        AdminActor actor, CancellationToken ct)
    {
        var user = await users.FindByIdAsync(id);
        if (user is null)
        {
            return NotFound(id);
        }

        if (!ETags.Matches(ifMatch, user.ConcurrencyStamp))
        {
            return AdminResult<UserView>.Stale(ETags.Format(user.ConcurrencyStamp));
        }

        if (string.IsNullOrEmpty(password))
        {
            return AdminResult<UserView>.Invalid("password", "is required.");
        }

        var before = await ViewAsync(user);
        var reset = await users.ResetPasswordAsync(user, await users.GeneratePasswordResetTokenAsync(user), password);
        if (!reset.Succeeded)
        {
            return Failure(reset);
        }

        await RevokeAsync(user, ct);
        var view = await ViewAsync(user);
        audit.Record(actor, AuditAction.UserPasswordReset, user.Id, before, view);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<UserView>.Ok(view, ETags.Format(user.ConcurrencyStamp));
    }

    private async Task<List<FieldError>> ValidateAsync(UserDocument document, bool creating, CancellationToken ct)
    {
        var errors = new List<FieldError>();
        if (creating && string.IsNullOrWhiteSpace(document.UserName))
        {
            errors.Add(FieldError.Request("user_name", "is required."));
        }
        else if (document.UserName?.Trim() is { Length: > ApplicationUser.NameColumnLength })
        {
            errors.Add(FieldError.Request("user_name", $"must be at most {ApplicationUser.NameColumnLength} characters."));
        }

        if (!creating && document.Password is not null)
        {
            errors.Add(FieldError.Request("password", "is set on creation only; use POST /api/admin/users/{id}/password to reset it."));
        }

        if (document.Email is { Length: > ApplicationUser.NameColumnLength })
        {
            errors.Add(FieldError.Request("email", $"must be at most {ApplicationUser.NameColumnLength} characters."));
        }
        else if (!string.IsNullOrWhiteSpace(document.Email)
            && !(System.Net.Mail.MailAddress.TryCreate(document.Email.Trim(), out var address) && address.Address == document.Email.Trim()))
        {
            errors.Add(FieldError.Request("email", $"'{document.Email}' is not an email address."));
        }

        var known = (await RoleNamesAsync(ct)).ToHashSet(StringComparer.Ordinal);
        foreach (var role in document.Roles.Where(r => !known.Contains(r ?? string.Empty)))
        {
            errors.Add(FieldError.Request("roles", $"'{role}' is not a role; create it first."));
        }

        return errors;
    }

    /// <summary>
    /// The read-only fields a document carries that do not describe the user: as it is now (<paramref name="current"/>,
    /// null on creation) nor as the document leaves it. Sent back as read, they are accepted; changed, they are refused
    /// naming the field that does set what they show.
    /// </summary>
    private IEnumerable<FieldError> ReadOnlyFieldErrors(UserDocument document, UserView? current)
    {
        if (current is null && document.Id is not null)
        {
            yield return FieldError.Request("id", "is given by the server; leave it out when creating a user.");
        }

        if (document.LockedOut is { } lockedOut && lockedOut != current?.LockedOut && lockedOut != IsLockedOut(document.LockoutEnd))
        {
            yield return FieldError.Request("locked_out", "is read-only: it follows lockout_end (a time in the future locks the user out, null unlocks).");
        }

        var hasPassword = current?.HasPassword ?? !string.IsNullOrEmpty(document.Password);
        if (document.HasPassword is { } sent && sent != hasPassword)
        {
            yield return FieldError.Request("has_password", current is null
                ? "is read-only: it follows password."
                : "is read-only: set a password with POST /api/admin/users/{id}/password.");
        }
    }

    /// <summary>
    /// Whether this user is the only one left who is in the admin role and not locked out. Two requests demoting the
    /// last two admins at once would each see the other still there, so the check holds a database lock until the
    /// request's transaction ends (<see cref="TransactionLocks"/>).
    /// </summary>
    private async Task<bool> IsLastActiveAdminAsync(ApplicationUser user, UserView current)
    {
        if (!current.Roles.Contains(AdminApi.Role) || current.LockedOut)
        {
            return false;
        }

        await TransactionLocks.TakeAsync(db, "admins", CancellationToken.None);
        var now = clock.GetUtcNow();
        return !(await users.GetUsersInRoleAsync(AdminApi.Role))
            .Any(u => u.Id != user.Id && (u.LockoutEnd is null || u.LockoutEnd <= now));
    }

    /// <summary>The user's consents and tokens revoked and their sessions' rows deleted (they end at their next request).</summary>
    private async Task RevokeAsync(ApplicationUser user, CancellationToken ct)
    {
        await sessionRows.EndAllAsync(user.Id, keep: null, ct);
        await authorizations.RevokeBySubjectAsync(user.Id, ct);
        await tokens.RevokeBySubjectAsync(user.Id, ct);
    }

    private bool IsLockedOut(DateTimeOffset? end) => end is { } until && until > clock.GetUtcNow();

    private async Task<UserView> ViewAsync(ApplicationUser user) =>
        View(user, [.. (await users.GetRolesAsync(user)).Order(StringComparer.Ordinal)]);

    private UserView View(ApplicationUser user, IReadOnlyList<string> roleNames) => new(
        user.Id, user.UserName, user.Email, user.EmailConfirmed, roleNames, user.LockoutEnd,
        user.LockoutEnabled && IsLockedOut(user.LockoutEnd), user.PasswordHash is not null);

    private static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    private static AdminResult<UserView> NotFound(string id) => AdminResult<UserView>.NotFound($"There is no user with id '{id}'.");

    private static AdminResult<UserView> LastAdmin() => AdminResult<UserView>.Conflict("roles",
        $"this is the last active user in the '{AdminApi.Role}' role; give the role to someone else first.");

    private static AdminResult<UserView> Failure(IdentityResult result) => IdentityErrors.ToResult<UserView>(result);
}

/// <summary>ASP.NET Core Identity's errors as field errors (or a conflict, or a stale entry).</summary>
internal static class IdentityErrors
{
    public static AdminResult<T> ToResult<T>(IdentityResult result)
    {
        var errors = result.Errors.ToList();
        if (errors.Any(e => e.Code == nameof(IdentityErrorDescriber.ConcurrencyFailure)))
        {
            return AdminResult<T>.Stale(null);
        }

        var duplicate = errors.FirstOrDefault(e => e.Code is nameof(IdentityErrorDescriber.DuplicateUserName)
            or nameof(IdentityErrorDescriber.DuplicateEmail) or nameof(IdentityErrorDescriber.DuplicateRoleName));
        if (duplicate is not null)
        {
            return AdminResult<T>.Conflict(FieldOf(duplicate.Code), duplicate.Description);
        }

        return AdminResult<T>.Invalid([.. errors.Select(e => FieldError.Request(FieldOf(e.Code), e.Description))]);
    }

    private static string FieldOf(string code) => code switch
    {
        _ when code.StartsWith("Password", StringComparison.Ordinal) => "password",
        _ when code.Contains("UserName", StringComparison.Ordinal) => "user_name",
        _ when code.Contains("Email", StringComparison.Ordinal) => "email",
        _ when code.Contains("RoleName", StringComparison.Ordinal) => "name",
        _ when code.Contains("Role", StringComparison.Ordinal) => "roles",
        _ => "",
    };
}
