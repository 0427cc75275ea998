using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// The account's passkeys (ASP.NET Core Identity's WebAuthn support): add one (passkeys.js asks the browser to create
/// it with the options from <see cref="OnPostCreationOptionsAsync"/>), rename, remove.
/// </summary>
[RequireRecentSignIn]
public sealed class PasskeysModel(
    UserManager<ApplicationUser> users,
    SignInManager<ApplicationUser> signInManager,
    AccountSessions sessions,
    Email.AccountEmails emails,
    External.ExternalProviders providers,
    Data.ApplicationDbContext db,
    ILogger<PasskeysModel> logger) : PageModel
{
    public const int MaximumPasskeys = 20;

    public const int MaximumNameLength = 100;

    public IReadOnlyList<UserPasskeyInfo> Passkeys { get; private set; } = [];

    /// <summary>The browser's answer to <c>navigator.credentials.create()</c>, as JSON.</summary>
    [BindProperty]
    public string? Credential { get; set; }

    [BindProperty]
    [StringLength(MaximumNameLength)]
    public string? Name { get; set; }

    [BindProperty]
    public string? Id { get; set; }

    [TempData]
    public string? StatusMessage { get; set; }

    public string? ErrorMessage { get; private set; }

    public static string IdOf(UserPasskeyInfo passkey) => WebEncoders.Base64UrlEncode(passkey.CredentialId);

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        Passkeys = [.. await users.GetPasskeysAsync(user)];
        return Page();
    }

    /// <summary>The WebAuthn creation options for a new passkey of this user (JSON for passkeys.js).</summary>
    public async Task<IActionResult> OnPostCreationOptionsAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        var entity = new PasskeyUserEntity { Id = user.Id, Name = user.UserName ?? user.Id, DisplayName = user.DisplayName ?? user.UserName ?? user.Id };
        return Content(await signInManager.MakePasskeyCreationOptionsAsync(entity), "application/json");
    }

    public async Task<IActionResult> OnPostAddAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        Passkeys = [.. await users.GetPasskeysAsync(user)];
        if (!ModelState.IsValid)
        {
            // The name's length (the form's maxlength is the browser's to keep, not a rule).
            ErrorMessage = $"A passkey's name has at most {MaximumNameLength} characters.";
            return Page();
        }

        if (string.IsNullOrEmpty(Credential) || Passkeys.Count >= MaximumPasskeys)
        {
            ErrorMessage = Passkeys.Count >= MaximumPasskeys ? $"An account can have at most {MaximumPasskeys} passkeys." : "The browser did not create a passkey.";
            return Page();
        }

        PasskeyAttestationResult attestation;
        try
        {
            attestation = await signInManager.PerformPasskeyAttestationAsync(Credential);
        }
        catch (InvalidOperationException)
        {
            attestation = PasskeyAttestationResult.Fail(new PasskeyException("No passkey registration is under way."));
        }

        if (!attestation.Succeeded || attestation.UserEntity.Id != user.Id)
        {
            logger.LogWarning(AccountEvents.PasskeyAdded, "Passkey registration for user {UserId} failed: {Reason}", user.Id, attestation.Failure?.Message);
            ErrorMessage = "The passkey could not be added. Try again.";
            return Page();
        }

        attestation.Passkey.Name = string.IsNullOrWhiteSpace(Name) ? $"Passkey added {DateTime.UtcNow:yyyy-MM-dd}" : Name.Trim();
        var stamp = user.SecurityStamp;
        var result = await users.AddOrUpdatePasskeyAsync(user, attestation.Passkey);
        await sessions.KeepThisSessionAsync(user, stamp);
        if (!result.Succeeded)
        {
            ErrorMessage = "The passkey could not be added: " + string.Join(" ", result.Errors.Select(e => e.Description));
            return Page();
        }

        logger.LogInformation(AccountEvents.PasskeyAdded, "User {UserId} added a passkey ({Name})", user.Id, attestation.Passkey.Name);
        // Not its name: text of the session's choosing does not go into the owner's email.
        emails.SendSignInMethodAdded(user, "A passkey", "/account/passkeys");
        StatusMessage = "Your passkey has been added. You can now sign in with it.";
        return RedirectToPage();
    }

    public async Task<IActionResult> OnPostRenameAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (await FindAsync(user) is { } passkey && !string.IsNullOrWhiteSpace(Name) && ModelState.IsValid)
        {
            passkey.Name = Name.Trim();
            var stamp = user.SecurityStamp;
            await users.AddOrUpdatePasskeyAsync(user, passkey);
            await sessions.KeepThisSessionAsync(user, stamp);
            logger.LogInformation(AccountEvents.PasskeyRenamed, "User {UserId} renamed a passkey to {Name}", user.Id, passkey.Name);
            StatusMessage = "The passkey has been renamed.";
        }

        return RedirectToPage();
    }

    public async Task<IActionResult> OnPostRemoveAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (await FindAsync(user) is { } passkey)
        {
            var removed = await SignInMethods.RemoveUnlessLastAsync(db, users, providers, user, () => users.RemovePasskeyAsync(user, passkey.CredentialId),
                passkey: passkey.CredentialId);
            if (removed is not { Succeeded: true })
            {
                Passkeys = [.. await users.GetPasskeysAsync(user)];
                ErrorMessage = removed is null ? SignInMethods.LastOneRefusal : "The passkey could not be removed: your account changed meanwhile. Try again.";
                return Page();
            }

            // A passkey is removed because its device is lost or not trusted: the sessions it may have started end, as
            // after a password change (Identity gives no new security stamp for it). This browser stays signed in.
            await sessions.EndOtherSessionsAsync(user, includingThisOne: false, "passkey removed");
            logger.LogWarning(AccountEvents.PasskeyRemoved, "User {UserId} removed a passkey ({Name})", user.Id, passkey.Name);
            StatusMessage = "The passkey has been removed.";
        }

        return RedirectToPage();
    }

    private async Task<UserPasskeyInfo?> FindAsync(ApplicationUser user)
    {
        if (string.IsNullOrEmpty(Id))
        {
            return null;
        }

        try
        {
            return await users.GetPasskeyAsync(user, WebEncoders.Base64UrlDecode(Id));
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
