using IdentityServer.Accounts.External;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// The other providers this account signs in with (<c>ExternalProviders</c>): connect one (after signing in to it),
/// or remove one while the account keeps another way to sign in.
/// </summary>
[RequireRecentSignIn]
public sealed class SignInProvidersModel(
    UserManager<ApplicationUser> users,
    SignInManager<ApplicationUser> signInManager,
    ExternalProviders providers,
    ExternalSignIns externalSignIns,
    AccountSessions sessions,
    ILogger<SignInProvidersModel> logger) : PageModel
{
    public IReadOnlyList<UserLoginInfo> Connected { get; private set; } = [];

    /// <summary>The configured providers this account is not connected to.</summary>
    public IReadOnlyList<ExternalProvider> Available { get; private set; } = [];

    /// <summary>Whether removing one leaves a way to sign in: a password, a passkey or another provider.</summary>
    public bool CanRemove { get; private set; }

    [TempData]
    public string? StatusMessage { get; set; }

    public string? ErrorMessage { get; private set; }

    public string DisplayNameOf(string provider) => providers.Find(provider)?.DisplayName ?? provider;

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        await LoadAsync(user);
        return Page();
    }

    public async Task<IActionResult> OnPostConnectAsync(string? provider)
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (providers.Find(provider) is not { } known)
        {
            await LoadAsync(user);
            ErrorMessage = "That sign-in provider is not available.";
            return Page();
        }

        // The provider's answer is accepted for this user only (Identity checks it against the user id sent along).
        var callback = Url.Page("/Accounts/Pages/Manage/SignInProviders", "Connected");
        return Challenge(signInManager.ConfigureExternalAuthenticationProperties(known.Name, callback, user.Id), known.Name);
    }

    /// <summary>Back from the provider: connects the provider account to this one.</summary>
    public async Task<IActionResult> OnGetConnectedAsync(bool failed)
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        var info = failed ? null : await externalSignIns.ReadAsync(user.Id);
        await externalSignIns.ForgetAsync();
        if (info is null)
        {
            StatusMessage = ExternalLoginModel.FailureMessage;
            return RedirectToPage();
        }

        var result = await users.AddLoginAsync(user, info);
        var name = DisplayNameOf(info.LoginProvider);
        if (!result.Succeeded)
        {
            logger.LogWarning(AccountEvents.ExternalLoginAdded, "User {UserId} could not connect {Provider}: {Errors}", user.Id, info.LoginProvider,
                string.Join("; ", result.Errors.Select(e => e.Code)));
            StatusMessage = $"That {name} account is connected to another account here already.";
            return RedirectToPage();
        }

        logger.LogInformation(AccountEvents.ExternalLoginAdded, "User {UserId} connected {Provider}", user.Id, info.LoginProvider);
        StatusMessage = $"{name} is connected: you can sign in with it now.";
        return RedirectToPage();
    }

    public async Task<IActionResult> OnPostRemoveAsync(string? provider, string? key)
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        await LoadAsync(user);
        if (!Connected.Any(l => l.LoginProvider == provider && l.ProviderKey == key))
        {
            return RedirectToPage();
        }

        if (!CanRemove)
        {
            ErrorMessage = "This is your only way to sign in: set a password or add a passkey first.";
            return Page();
        }

        // Identity gives the account a new security stamp: the sessions signed in through the provider end, with the
        // others, and this browser's carries on.
        await users.RemoveLoginAsync(user, provider!, key!);
        await sessions.EndOtherSessionsAsync(user, includingThisOne: false, "sign-in provider removed", stampAlreadyUpdated: true);
        logger.LogWarning(AccountEvents.ExternalLoginRemoved, "User {UserId} removed {Provider}", user.Id, provider);
        StatusMessage = $"{DisplayNameOf(provider!)} is no longer connected.";
        return RedirectToPage();
    }

    private async Task LoadAsync(ApplicationUser user)
    {
        Connected = [.. await users.GetLoginsAsync(user)];
        Available = [.. providers.All.Where(p => Connected.All(l => l.LoginProvider != p.Name))];
        CanRemove = Connected.Count > 1 || await users.HasPasswordAsync(user) || (await users.GetPasskeysAsync(user)).Count > 0;
    }
}
