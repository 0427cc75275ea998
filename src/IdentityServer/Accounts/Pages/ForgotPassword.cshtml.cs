using System.ComponentModel.DataAnnotations;
using System.Text;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Accounts.Pages;

/// <summary>Emails a password reset link. Answers the same (and as fast: emails are queued) whether or not the account exists.</summary>
[AllowAnonymous]
public sealed class ForgotPasswordModel(UserManager<ApplicationUser> users, AccountEmails emails, ILogger<ForgotPasswordModel> logger) : PageModel
{
    [BindProperty]
    public EmailInput Input { get; set; } = new();

    public bool Sent { get; private set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = await users.FindByEmailAsync(Input.Email.Trim());
        if (user?.Email is not null)
        {
            var code = WebEncoders.Base64UrlEncode(Encoding.UTF8.GetBytes(await users.GeneratePasswordResetTokenAsync(user)));
            emails.SendPasswordReset(user.Id, user.Email, user.UserName ?? user.Email, emails.Link("/account/reset-password",
                new Dictionary<string, string?> { ["userId"] = user.Id, ["code"] = code }));
            logger.LogInformation(AccountEvents.PasswordResetRequested, "Password reset link sent to user {UserId}", user.Id);
        }

        Sent = true;
        return Page();
    }

    public sealed class EmailInput
    {
        [Required(ErrorMessage = "Enter your email address.")]
        [EmailAddress(ErrorMessage = "Enter a valid email address.")]
        public string Email { get; set; } = string.Empty;
    }
}
