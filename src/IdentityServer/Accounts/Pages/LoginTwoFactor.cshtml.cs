using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>
/// The second step of a password sign-in for an account with an authenticator app: a six-digit code (RFC 6238).
/// Wrong codes count towards the lockout like wrong passwords.
/// </summary>
[AllowAnonymous]
public sealed class LoginTwoFactorModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    ILogger<LoginTwoFactorModel> logger) : PageModel
{
    public const string FailureMessage = "That code is not valid.";

    [BindProperty]
    public CodeInput Input { get; set; } = new();

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    public string? ErrorMessage { get; private set; }

    public async Task<IActionResult> OnGetAsync() =>
        await sessions.GetSecondFactorUserAsync() is null ? RedirectToLogin() : Page();

    public async Task<IActionResult> OnPostAsync()
    {
        var pending = await sessions.GetSecondFactorUserAsync();
        if (pending is not { } signIn)
        {
            return RedirectToLogin();
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = signIn.User;
        if (await users.IsLockedOutAsync(user))
        {
            logger.LogWarning(AccountEvents.LockedOut, "Second factor refused for {UserId}: account locked out", user.Id);
            ErrorMessage = FailureMessage;
            return Page();
        }

        var code = Input.Code.Replace(" ", string.Empty, StringComparison.Ordinal).Replace("-", string.Empty, StringComparison.Ordinal);
        if (!await users.VerifyTwoFactorTokenAsync(user, users.Options.Tokens.AuthenticatorTokenProvider, code))
        {
            await users.AccessFailedAsync(user);
            logger.LogWarning(AccountEvents.SignInFailed, "Sign-in failed (wrong authenticator code) for user {UserId}", user.Id);
            if (await users.IsLockedOutAsync(user))
            {
                logger.LogWarning(AccountEvents.LockedOut, "User {UserId} locked out after wrong authenticator codes", user.Id);
            }

            ErrorMessage = FailureMessage;
            return Page();
        }

        await users.ResetAccessFailedCountAsync(user);
        await sessions.CompleteSecondFactorAsync(user, signIn.MethodsSoFar, "authenticator code", Input.RememberDevice);
        return LocalRedirect(Url.OursOr(ReturnUrl, "~/"));
    }

    private RedirectToPageResult RedirectToLogin() => RedirectToPage("/Accounts/Pages/Login", new { ReturnUrl });

    public sealed class CodeInput
    {
        [Required(ErrorMessage = "Enter the code from your authenticator app.")]
        [StringLength(10, ErrorMessage = "Enter the six digits from your authenticator app.")]
        public string Code { get; set; } = string.Empty;

        public bool RememberDevice { get; set; }
    }
}
