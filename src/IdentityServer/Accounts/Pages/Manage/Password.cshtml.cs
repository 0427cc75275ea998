using System.ComponentModel.DataAnnotations;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// Change the password: the current one is asked for; every other session ends and refresh tokens are revoked. An
/// account made through another sign-in provider has none: it sets one, after a recent sign-in instead.
/// </summary>
public sealed class PasswordModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    AccountEmails emails,
    ILogger<PasswordModel> logger) : PageModel
{
    [BindProperty]
    public PasswordInput Input { get; set; } = new();

    [TempData]
    public string? StatusMessage { get; set; }

    /// <summary>Whether the account has a password to change (else it sets its first).</summary>
    public bool HasPassword { get; private set; } = true;

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        HasPassword = await users.HasPasswordAsync(user);
        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (!(HasPassword = await users.HasPasswordAsync(user)))
        {
            return await SetFirstPasswordAsync(user);
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        switch (await sessions.CheckPasswordAsync(user, Input.CurrentPassword))
        {
            case PasswordCheck.LockedOut:
                return LocalRedirect("~" + AccountsExtensions.LoginPath);
            case PasswordCheck.Wrong:
                ModelState.AddModelError("Input.CurrentPassword", "The current password is incorrect.");
                return Page();
        }

        var result = await users.ChangePasswordAsync(user, Input.CurrentPassword, Input.NewPassword);
        if (!result.Succeeded)
        {
            foreach (var error in result.Errors)
            {
                ModelState.AddModelError("Input.NewPassword", error.Description);
            }

            return Page();
        }

        logger.LogInformation(AccountEvents.PasswordChanged, "User {UserId} changed the password", user.Id);
        await sessions.EndOtherSessionsAsync(user, includingThisOne: false, "password changed", stampAlreadyUpdated: true);
        if (user.Email is not null)
        {
            emails.SendPasswordChanged(user.Id, user.Email, user.UserName ?? user.Email, emails.Link("/account/forgot-password"));
        }

        StatusMessage = "Your password has been changed. Your other sessions were signed out.";
        return RedirectToPage();
    }

    /// <summary>Adds a way to sign in, as a passkey does: a session older than Accounts:RecentSignIn signs in again first.</summary>
    private async Task<IActionResult> SetFirstPasswordAsync(ApplicationUser user)
    {
        ModelState.Remove("Input.CurrentPassword");
        if (!RequireRecentSignInAttribute.IsRecent(HttpContext))
        {
            return RequireRecentSignInAttribute.SignInAgain(HttpContext);
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var stamp = user.SecurityStamp;
        var result = await users.AddPasswordAsync(user, Input.NewPassword);
        await sessions.KeepThisSessionAsync(user, stamp);
        if (!result.Succeeded)
        {
            foreach (var error in result.Errors)
            {
                ModelState.AddModelError("Input.NewPassword", error.Description);
            }

            return Page();
        }

        logger.LogInformation(AccountEvents.PasswordChanged, "User {UserId} set a password", user.Id);
        emails.SendSignInMethodAdded(user, "A password", "/account/password");
        StatusMessage = "Your password has been set. You can sign in with it now.";
        return RedirectToPage();
    }

    public sealed class PasswordInput
    {
        [Required(ErrorMessage = "Enter your current password.")]
        public string CurrentPassword { get; set; } = string.Empty;

        [Required(ErrorMessage = "Choose a new password.")]
        [StringLength(256)]
        public string NewPassword { get; set; } = string.Empty;

        [Compare(nameof(NewPassword), ErrorMessage = "The passwords do not match.")]
        public string ConfirmPassword { get; set; } = string.Empty;
    }
}
