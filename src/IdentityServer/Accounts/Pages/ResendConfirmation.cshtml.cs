using System.ComponentModel.DataAnnotations;
using System.Text;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Accounts.Pages;

/// <summary>Sends the email confirmation link again. Answers the same whether or not the address has an unconfirmed account.</summary>
[AllowAnonymous]
public sealed class ResendConfirmationModel(UserManager<ApplicationUser> users, AccountEmails emails) : PageModel
{
    /// <summary>Posted as <c>Input.Email</c>, as on the other pages: the rate limiter finds the account by that name.</summary>
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
        if (user is { EmailConfirmed: false, Email: not null })
        {
            var code = WebEncoders.Base64UrlEncode(Encoding.UTF8.GetBytes(await users.GenerateEmailConfirmationTokenAsync(user)));
            emails.SendEmailConfirmation(user.Id, user.Email, user.UserName ?? user.Email, emails.Link("/account/confirm-email",
                new Dictionary<string, string?> { ["userId"] = user.Id, ["code"] = code }));
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
