using System.Text;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Accounts.Pages;

/// <summary>The link in the confirmation email. A GET only shows a button, so mail scanners that open links confirm nothing.</summary>
[AllowAnonymous]
public sealed class ConfirmEmailModel(UserManager<ApplicationUser> users, ILogger<ConfirmEmailModel> logger) : PageModel
{
    [BindProperty(SupportsGet = true)]
    public string? UserId { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Code { get; set; }

    /// <summary>Where the registration started (an app's sign-up); local addresses only.</summary>
    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    /// <summary>The sign-in link once confirmed: back to where the registration started, when it was here.</summary>
    public string SignInUrl => Url.IsOurs(ReturnUrl) ? Url.Content("~/account/login") + "?returnUrl=" + Uri.EscapeDataString(ReturnUrl) : Url.Content("~/account/login");

    public bool? Confirmed { get; private set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = UserId is null ? null : await users.FindByIdAsync(UserId);
        var token = Decode(Code);
        Confirmed = user is not null && token is not null && (await users.ConfirmEmailAsync(user, token)).Succeeded;
        if (Confirmed == true)
        {
            logger.LogInformation(AccountEvents.EmailConfirmed, "User {UserId} confirmed the email address", user!.Id);
        }

        return Page();
    }

    internal static string? Decode(string? code)
    {
        try
        {
            return string.IsNullOrEmpty(code) ? null : Encoding.UTF8.GetString(WebEncoders.Base64UrlDecode(code));
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
