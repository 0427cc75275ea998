using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>The second step with one of the account's recovery codes instead of the authenticator: each works once.</summary>
[AllowAnonymous]
public sealed class LoginRecoveryCodeModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    ILogger<LoginRecoveryCodeModel> logger) : PageModel
{
    public const string FailureMessage = "That recovery code is not valid.";

    [BindProperty]
    [Required(ErrorMessage = "Enter one of your recovery codes.")]
    [StringLength(64)]
    public string RecoveryCode { get; set; } = string.Empty;

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    public string? ErrorMessage { get; private set; }

    public async Task<IActionResult> OnGetAsync() =>
        await sessions.GetSecondFactorUserAsync() is null ? RedirectToPage("/Accounts/Pages/Login", new { ReturnUrl }) : Page();

    public async Task<IActionResult> OnPostAsync()
    {
        if (await sessions.GetSecondFactorUserAsync() is not { } signIn)
        {
            return RedirectToPage("/Accounts/Pages/Login", new { ReturnUrl });
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = signIn.User;
        var code = RecoveryCode.Replace(" ", string.Empty, StringComparison.Ordinal);
        if (await users.IsLockedOutAsync(user) || !(await users.RedeemTwoFactorRecoveryCodeAsync(user, code)).Succeeded)
        {
            await users.AccessFailedAsync(user);
            logger.LogWarning(AccountEvents.SignInFailed, "Sign-in failed (wrong or used recovery code, or locked out) for user {UserId}", user.Id);
            ErrorMessage = FailureMessage;
            return Page();
        }

        await users.ResetAccessFailedCountAsync(user);
        logger.LogWarning(AccountEvents.RecoveryCodeUsed, "User {UserId} used a recovery code; {Left} left", user.Id, await users.CountRecoveryCodesAsync(user));
        await sessions.CompleteSecondFactorAsync(user, signIn.MethodsSoFar, "recovery code", rememberDevice: false);
        return LocalRedirect(Url.OursOr(ReturnUrl, "~/"));
    }
}
