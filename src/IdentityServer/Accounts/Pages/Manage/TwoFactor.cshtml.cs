using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>Two-factor status: turn the authenticator off, make new recovery codes, forget this device.</summary>
[RequireRecentSignIn]
public sealed class TwoFactorModel(
    UserManager<ApplicationUser> users,
    SignInManager<ApplicationUser> signInManager,
    AccountSessions sessions,
    ILogger<TwoFactorModel> logger) : PageModel
{
    public bool Enabled { get; private set; }

    public int RecoveryCodesLeft { get; private set; }

    public bool DeviceRemembered { get; private set; }

    /// <summary>New recovery codes, shown once.</summary>
    public IReadOnlyList<string>? RecoveryCodes { get; private set; }

    [TempData]
    public string? StatusMessage { get; set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        await LoadAsync(user);
        return Page();
    }

    public async Task<IActionResult> OnPostDisableAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        await users.SetTwoFactorEnabledAsync(user, false);
        await users.ResetAuthenticatorKeyAsync(user);
        await sessions.RefreshAsync(user);
        logger.LogWarning(AccountEvents.TwoFactorDisabled, "User {UserId} turned two-factor sign-in off", user.Id);
        StatusMessage = "Two-factor sign-in is off.";
        return RedirectToPage();
    }

    public async Task<IActionResult> OnPostRecoveryCodesAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (!await users.GetTwoFactorEnabledAsync(user))
        {
            return RedirectToPage();
        }

        RecoveryCodes = [.. await users.GenerateNewTwoFactorRecoveryCodesAsync(user, 10) ?? []];
        logger.LogInformation(AccountEvents.RecoveryCodesGenerated, "User {UserId} made new recovery codes", user.Id);
        await LoadAsync(user);
        return Page();
    }

    public async Task<IActionResult> OnPostForgetDeviceAsync()
    {
        await signInManager.ForgetTwoFactorClientAsync();
        StatusMessage = "This device will be asked for a code again.";
        return RedirectToPage();
    }

    private async Task LoadAsync(ApplicationUser user)
    {
        Enabled = await users.GetTwoFactorEnabledAsync(user);
        RecoveryCodesLeft = await users.CountRecoveryCodesAsync(user);
        DeviceRemembered = await signInManager.IsTwoFactorClientRememberedAsync(user);
    }
}
