using System.ComponentModel.DataAnnotations;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>
/// The link in the reset email: a new password. The link works once (it is bound to the security stamp, which the
/// reset changes) and expires after <c>Accounts:EmailLinkLifetime</c>. The reset ends every session of the account and
/// revokes its refresh tokens.
/// </summary>
[AllowAnonymous]
public sealed class ResetPasswordModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    AccountEmails emails,
    ILogger<ResetPasswordModel> logger) : PageModel
{
    public const string InvalidLinkMessage = "This link has expired or has already been used.";

    [BindProperty(SupportsGet = true)]
    public string? UserId { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Code { get; set; }

    [BindProperty]
    public PasswordInput Input { get; set; } = new();

    public bool LinkInvalid { get; private set; }

    public bool Done { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        var user = UserId is null ? null : await users.FindByIdAsync(UserId);
        var token = ConfirmEmailModel.Decode(Code);
        LinkInvalid = user is null || token is null
            || !await users.VerifyUserTokenAsync(user, users.Options.Tokens.PasswordResetTokenProvider, UserManager<ApplicationUser>.ResetPasswordTokenPurpose, token);
        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = UserId is null ? null : await users.FindByIdAsync(UserId);
        var token = ConfirmEmailModel.Decode(Code);
        if (user is null || token is null)
        {
            LinkInvalid = true;
            return Page();
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var result = await users.ResetPasswordAsync(user, token, Input.Password);
        if (!result.Succeeded)
        {
            if (result.Errors.Any(e => e.Code == nameof(IdentityErrorDescriber.InvalidToken)))
            {
                logger.LogWarning(AccountEvents.PasswordReset, "Password reset refused for user {UserId}: link expired or used", user.Id);
                LinkInvalid = true;
                return Page();
            }

            foreach (var error in result.Errors)
            {
                ModelState.AddModelError("Input.Password", error.Description);
            }

            return Page();
        }

        logger.LogInformation(AccountEvents.PasswordReset, "User {UserId} reset the password", user.Id);
        // A reset means the old password may be known to someone else: end every session. A lockout stays: an admin's
        // is how a user is disabled, and one after wrong passwords ends by itself (Accounts:Lockout:Duration).
        await users.ResetAccessFailedCountAsync(user);
        await sessions.EndOtherSessionsAsync(user, includingThisOne: true, "password reset", stampAlreadyUpdated: true);
        if (user.Email is not null)
        {
            emails.SendPasswordChanged(user.Id, user.Email, user.UserName ?? user.Email, emails.Link("/account/forgot-password"));
        }

        Done = true;
        return Page();
    }

    public sealed class PasswordInput
    {
        [Required(ErrorMessage = "Choose a new password.")]
        [StringLength(256)]
        public string Password { get; set; } = string.Empty;

        [Compare(nameof(Password), ErrorMessage = "The passwords do not match.")]
        public string ConfirmPassword { get; set; } = string.Empty;
    }
}
