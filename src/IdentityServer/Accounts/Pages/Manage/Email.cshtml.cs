using System.ComponentModel.DataAnnotations;
using System.Text;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// Change the email address: the current password is asked for, and the new address only replaces the old one once
/// the link sent to it is opened. An address another account uses gets the same answer and no link. An account
/// without a password (made through another sign-in provider) needs a recent sign-in instead.
/// </summary>
public sealed class EmailModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    AccountEmails emails,
    ILogger<EmailModel> logger) : PageModel
{
    [BindProperty]
    public EmailInput Input { get; set; } = new();

    public string? CurrentEmail { get; private set; }

    [TempData]
    public string? StatusMessage { get; set; }

    /// <summary>Whether the account has a password to confirm the change with.</summary>
    public bool HasPassword { get; private set; } = true;

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        CurrentEmail = user.Email;
        HasPassword = await users.HasPasswordAsync(user);
        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        CurrentEmail = user.Email;
        if (!(HasPassword = await users.HasPasswordAsync(user)))
        {
            // No password to give: a wrong one would only count towards a lockout.
            ModelState.Remove("Input.Password");
            if (!RequireRecentSignInAttribute.IsRecent(HttpContext))
            {
                return RequireRecentSignInAttribute.SignInAgain(HttpContext);
            }
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        switch (HasPassword ? await sessions.CheckPasswordAsync(user, Input.Password) : PasswordCheck.Right)
        {
            case PasswordCheck.LockedOut:
                return LocalRedirect("~" + AccountsExtensions.LoginPath);
            case PasswordCheck.Wrong:
                ModelState.AddModelError("Input.Password", "The password is incorrect.");
                return Page();
        }

        var newEmail = Input.NewEmail.Trim();
        if (await users.FindByEmailAsync(newEmail) is null)
        {
            var code = WebEncoders.Base64UrlEncode(Encoding.UTF8.GetBytes(await users.GenerateChangeEmailTokenAsync(user, newEmail)));
            emails.SendEmailChange(user.Id, newEmail, user.UserName ?? newEmail, emails.Link("/account/confirm-email-change",
                new Dictionary<string, string?> { ["userId"] = user.Id, ["email"] = newEmail, ["code"] = code }));
            logger.LogInformation(AccountEvents.EmailChangeRequested, "User {UserId} asked to change the email address", user.Id);
        }

        StatusMessage = $"We have sent a confirmation link to {newEmail}. Your address changes when you open it.";
        return RedirectToPage();
    }

    public sealed class EmailInput
    {
        [Required(ErrorMessage = "Enter the new email address.")]
        [EmailAddress(ErrorMessage = "Enter a valid email address.")]
        [StringLength(256)]
        public string NewEmail { get; set; } = string.Empty;

        [Required(ErrorMessage = "Enter your password.")]
        public string Password { get; set; } = string.Empty;
    }
}
