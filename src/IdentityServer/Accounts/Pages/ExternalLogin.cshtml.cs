using IdentityServer.Accounts.External;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>
/// Where a sign-in with another provider comes back to (after its handler checked the answer at <c>/signin-{name}</c>):
/// signs in the connected account (or a new one), asks its second factor, or says why not.
/// </summary>
[AllowAnonymous]
public sealed class ExternalLoginModel(ExternalSignIns externalSignIns) : PageModel
{
    public const string FailureMessage = "Signing in with that provider did not work. Try again, or sign in another way.";

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    public string? ErrorMessage { get; private set; }

    /// <summary>The login page, keeping the application's request.</summary>
    public string LoginUrl => Url.Page("/Accounts/Pages/Login", new { ReturnUrl = SafeReturnUrl })!;

    public async Task<IActionResult> OnGetAsync(bool failed)
    {
        if (failed || await externalSignIns.ReadAsync() is not { } info)
        {
            ErrorMessage = FailureMessage;
            return Page();
        }

        var stepUp = Url.Read(ReturnUrl, SignInHints.LevelParameter) is AuthenticationLevels.MultiFactor or AuthenticationLevels.PhishingResistant;
        var result = await externalSignIns.SignInAsync(info, stepUp);
        if (result.NeedsSecondFactor)
        {
            return RedirectToPage("/Accounts/Pages/LoginTwoFactor", new { ReturnUrl = SafeReturnUrl });
        }

        if (!result.IsSignedIn)
        {
            await externalSignIns.ForgetAsync();
            ErrorMessage = result.Refusal;
            return Page();
        }

        return LocalRedirect(SafeReturnUrl);
    }

    private string SafeReturnUrl => Url.OursOr(ReturnUrl, "~/");
}
