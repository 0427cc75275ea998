using System.Text.Json;
using IdentityServer.Admin;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using LogoutModel = IdentityServer.Accounts.Pages.LogoutModel;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// The account's personal data (GDPR articles 15, 17 and 20): a copy of what the server keeps about the person, as
/// JSON, and deleting the account. Both need a recent sign-in; deleting also needs the user name typed, and goes the way
/// an administrator's deletion goes (its sessions end and their applications are told, its tokens and consents are
/// revoked, the audit log records it), except for the last administrator, who must hand over first.
/// </summary>
[RequireRecentSignIn]
public sealed class PersonalDataModel(
    UserManager<ApplicationUser> users,
    UserSessions sessionRows,
    ConnectedApps connectedApps,
    UserAdmin userAdmin,
    AccountSessions sessions,
    Logout.FrontChannelLogout frontChannel,
    TimeProvider clock,
    ILogger<PersonalDataModel> logger) : PageModel
{
    private static readonly JsonSerializerOptions ExportFormat = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The user name, typed again to delete the account.</summary>
    [BindProperty]
    public string? ConfirmUserName { get; set; }

    public string UserName { get; private set; } = string.Empty;

    public string? ErrorMessage { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        UserName = user.UserName ?? string.Empty;
        return Page();
    }

    /// <summary>Everything kept about the person that they can read: not the password's hash, keys, codes or session ids.</summary>
    public async Task<IActionResult> OnPostDownloadAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        var ct = HttpContext.RequestAborted;
        var export = new
        {
            ExportedAt = clock.GetUtcNow(),
            Account = new
            {
                user.Id, user.UserName, user.DisplayName, user.Email, EmailVerified = user.EmailConfirmed, user.PhoneNumber,
                TwoFactorEnabled = user.TwoFactorEnabled, LockedOutUntil = user.LockoutEnd, Roles = await users.GetRolesAsync(user),
            },
            Passkeys = (await users.GetPasskeysAsync(user)).Select(p => new { p.Name, p.CreatedAt, Synced = p.IsBackupEligible }),
            SignInProviders = (await users.GetLoginsAsync(user)).Select(l => new { Provider = l.LoginProvider, Issuer = l.ProviderDisplayName, AccountId = l.ProviderKey }),
            Sessions = (await sessionRows.ListAsync(user.Id, ct)).Select(s => new
            {
                SignedInAt = new DateTimeOffset(s.SignedInAt, TimeSpan.Zero), LastSeenAt = new DateTimeOffset(s.LastSeenAt, TimeSpan.Zero),
                ExpiresAt = new DateTimeOffset(s.ExpiresAt, TimeSpan.Zero), SignedInWith = s.MethodList(), s.Browser,
            }),
            ConnectedApps = (await connectedApps.ListAsync(user.Id, ct)).Select(a => new { a.ClientId, a.Name, a.Scopes, a.GrantedAt }),
        };

        logger.LogInformation(AccountEvents.PersonalDataDownloaded, "User {UserId} downloaded their personal data", user.Id);
        Response.Headers.CacheControl = "no-store";
        return File(JsonSerializer.SerializeToUtf8Bytes(export, ExportFormat), "application/json", "personal-data.json");
    }

    public async Task<IActionResult> OnPostDeleteAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        UserName = user.UserName ?? string.Empty;
        if (!string.Equals(ConfirmUserName?.Trim(), UserName, StringComparison.Ordinal))
        {
            ErrorMessage = "Type your user name exactly to confirm.";
            return Page();
        }

        // This browser's applications are told in the browser too (front-channel logout): their frames are read while the
        // session still has its clients, and handed over to the signed-out page.
        var frames = await frontChannel.FramesAsync(User, CancellationToken.None);
        var actor = new AdminActor(AdminActor.UserType, user.Id, user.UserName, ClientId: null, HttpContext.TraceIdentifier);
        var deleted = await userAdmin.DeleteAsync(user.Id, ifMatch: null, actor, CancellationToken.None);
        if (deleted.Outcome != AdminOutcome.Ok)
        {
            ErrorMessage = deleted.Outcome == AdminOutcome.Conflict
                ? "You are the last administrator: make someone else an administrator first."
                : "Your account could not be deleted. Try again.";
            logger.LogWarning(AccountEvents.AccountDeletionRefused, "User {UserId} could not delete their account: {Outcome}", user.Id, deleted.Outcome);
            return Page();
        }

        logger.LogInformation(AccountEvents.AccountDeleted, "User {UserId} deleted their account", user.Id);
        Logout.FrontChannelLogout.HandOver(TempData, frames);
        TempData[nameof(LogoutModel.Deleted)] = true;
        await sessions.SignOutAsync();
        return RedirectToPage("/Accounts/Pages/Logout");
    }
}
