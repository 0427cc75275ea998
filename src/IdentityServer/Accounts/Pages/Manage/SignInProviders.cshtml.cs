using IdentityServer.Accounts.Email;
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
    ExternalProviders providers,
    ExternalSignIns externalSignIns,
    AccountSessions sessions,
    AccountEmails emails,
    Data.ApplicationDbContext db,
    ILogger<SignInProvidersModel> logger) : PageModel
{
    public IReadOnlyList<UserLoginInfo> Connected { get; private set; } = [];

    /// <summary>The configured providers this account is not connected to.</summary>
    public IReadOnlyList<ExternalProvider> Available { get; private set; } = [];

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

        if (providers.Find(provider) is not { } known || !await externalSignIns.IsReachableAsync(known, HttpContext.RequestAborted))
        {
            await LoadAsync(user);
            ErrorMessage = "That sign-in provider is not available right now. Try again later.";
            return Page();
        }

        // The provider's answer is accepted for this user only (Identity checks it against the user id sent along). The
        // provider's own session may answer: connecting proves the person holds that account, and this page needs a
        // recent sign-in here.
        var callback = Url.Page("/Accounts/Pages/Manage/SignInProviders", "Connected");
        return Challenge(externalSignIns.ChallengeProperties(known, callback, user.Id, fresh: false), known.Name);
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

        var name = DisplayNameOf(info.LoginProvider);
        if (!await externalSignIns.TryAddLoginAsync(user, info))
        {
            logger.LogWarning(AccountEvents.ExternalLoginAdded, "User {UserId} could not connect {Provider}: connected to another account",
                user.Id, info.LoginProvider);
            StatusMessage = $"That {name} account is connected to another account here already.";
            return RedirectToPage();
        }

        logger.LogInformation(AccountEvents.ExternalLoginAdded, "User {UserId} connected {Provider}", user.Id, info.LoginProvider);
        emails.SendSignInMethodAdded(user, $"Signing in with {name}", "/account/sign-in-providers");
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
        if (Connected.FirstOrDefault(l => l.LoginProvider == provider && l.ProviderKey == key) is not { } removed)
        {
            return RedirectToPage();
        }

        // Identity gives the account a new security stamp: the sessions signed in through the provider end, with the
        // others, and this browser's carries on.
        var result = await SignInMethods.RemoveUnlessLastAsync(db, users, providers, user, () => users.RemoveLoginAsync(user, provider!, key!), login: removed);
        if (result is not { Succeeded: true })
        {
            ErrorMessage = result is null ? SignInMethods.LastOneRefusal : "The provider could not be removed. Try again.";
            return Page();
        }

        await sessions.EndOtherSessionsAsync(user, includingThisOne: false, "sign-in provider removed", stampAlreadyUpdated: true);
        logger.LogWarning(AccountEvents.ExternalLoginRemoved, "User {UserId} removed {Provider}", user.Id, provider);
        StatusMessage = $"{DisplayNameOf(provider!)} is no longer connected.";
        return RedirectToPage();
    }

    private async Task LoadAsync(ApplicationUser user)
    {
        Connected = [.. await users.GetLoginsAsync(user)];
        Available = [.. providers.All.Where(p => Connected.All(l => l.LoginProvider != p.Name))];
    }
}
