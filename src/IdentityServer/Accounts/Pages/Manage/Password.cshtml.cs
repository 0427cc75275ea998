using System.ComponentModel.DataAnnotations;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>Change the password: the current one is asked for; every other session ends and refresh tokens are revoked.</summary>
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

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
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
            emails.SendPasswordChanged(user.Email, user.UserName ?? user.Email, emails.Link("/account/forgot-password"));
        }

        StatusMessage = "Your password has been changed. Your other sessions were signed out.";
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
