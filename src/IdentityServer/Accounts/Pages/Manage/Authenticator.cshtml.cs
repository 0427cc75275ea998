using System.ComponentModel.DataAnnotations;
using System.Text;
using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using QRCoder;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// Authenticator enrolment: the shared key as a QR code (rendered here as SVG) and as text; two-factor sign-in is
/// turned on only after a code from the app checks out; then ten recovery codes are shown once.
/// </summary>
[RequireRecentSignIn(IncludingGet = true)] // its GET makes a new key when there is none
public sealed class AuthenticatorModel(
    UserManager<ApplicationUser> users,
    IUserStore<ApplicationUser> userStore,
    AccountSessions sessions,
    Email.AccountEmails emails,
    IOptions<AccountsOptions> accounts,
    ILogger<AuthenticatorModel> logger) : PageModel
{
    public string SharedKey { get; private set; } = string.Empty;

    public string AuthenticatorUri { get; private set; } = string.Empty;

    /// <summary>The QR code of <see cref="AuthenticatorUri"/> as an SVG data URI (an image, so no inline markup or style).</summary>
    public string QrCodeImage { get; private set; } = string.Empty;

    public IReadOnlyList<string>? RecoveryCodes { get; private set; }

    [BindProperty]
    [Required(ErrorMessage = "Enter the code your app shows.")]
    [StringLength(10)]
    public string Code { get; set; } = string.Empty;

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (await users.GetTwoFactorEnabledAsync(user))
        {
            return RedirectToPage("/Accounts/Pages/Manage/TwoFactor");
        }

        return await LoadKeyAsync(user) ? Page() : RedirectToPage();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (!ModelState.IsValid)
        {
            return await LoadKeyAsync(user) ? Page() : RedirectToPage();
        }

        var code = Code.Replace(" ", string.Empty, StringComparison.Ordinal).Replace("-", string.Empty, StringComparison.Ordinal);
        if (!await users.VerifyTwoFactorTokenAsync(user, users.Options.Tokens.AuthenticatorTokenProvider, code))
        {
            ModelState.AddModelError(nameof(Code), "That code is not valid. Check the time on your phone and try the next code.");
            return await LoadKeyAsync(user) ? Page() : RedirectToPage();
        }

        await users.SetTwoFactorEnabledAsync(user, true);
        RecoveryCodes = [.. await users.GenerateNewTwoFactorRecoveryCodesAsync(user, 10) ?? []];
        await sessions.RefreshAsync(user);
        logger.LogInformation(AccountEvents.TwoFactorEnabled, "User {UserId} turned two-factor sign-in on with an authenticator app", user.Id);
        // Whoever holds the app now passes the second step: the owner hears of it, as of a passkey.
        emails.SendSignInMethodAdded(user, "An authenticator app", "/account/two-factor");
        return Page();
    }

    /// <summary>
    /// Shows the user's pending key, making one if there is none. False when another request made one at the same
    /// moment (this one's save lost): the page is asked again, and shows that key.
    /// </summary>
    private async Task<bool> LoadKeyAsync(ApplicationUser user)
    {
        var key = await users.GetAuthenticatorKeyAsync(user);
        if (string.IsNullOrEmpty(key))
        {
            // A key for the user to scan, not yet in use: stored without a new security stamp (Identity's reset gives one),
            // so opening this page (a link from anywhere can open it) ends no session. Turning it on gives the new stamp.
            key = users.GenerateNewAuthenticatorKey();
            await ((IUserAuthenticatorKeyStore<ApplicationUser>)userStore).SetAuthenticatorKeyAsync(user, key, HttpContext.RequestAborted);
            try
            {
                if (!(await users.UpdateAsync(user)).Succeeded)
                {
                    return false; // a concurrency failure: the user changed meanwhile
                }
            }
            catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
            {
                return false; // the other request's key row is there
            }
        }

        SharedKey = string.Join(' ', key.ToLowerInvariant().Chunk(4).Select(c => new string(c)));
        var issuer = accounts.Value.AuthenticatorIssuer;
        var account = user.Email ?? user.UserName ?? user.Id;
        AuthenticatorUri = $"otpauth://totp/{Uri.EscapeDataString(issuer)}:{Uri.EscapeDataString(account)}?secret={key}&issuer={Uri.EscapeDataString(issuer)}&digits=6";
        using var data = QRCodeGenerator.GenerateQrCode(AuthenticatorUri, QRCodeGenerator.ECCLevel.M);
        var svg = new SvgQRCode(data).GetGraphic(4);
        QrCodeImage = "data:image/svg+xml;base64," + Convert.ToBase64String(Encoding.UTF8.GetBytes(svg));
        return true;
    }
}
