using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>
/// The link sent to a new email address. A GET only shows a button (and the address, once the link checks out); the
/// POST makes the change.
/// </summary>
[AllowAnonymous]
public sealed class ConfirmEmailChangeModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    AccountEmails emails,
    ILogger<ConfirmEmailChangeModel> logger) : PageModel
{
    [BindProperty(SupportsGet = true)]
    public string? UserId { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Email { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Code { get; set; }

    public bool? Changed { get; private set; }

    /// <summary>Whether the link is one this server sent for this account and this address, and still works.</summary>
    public bool LinkWorks { get; private set; }

    /// <summary>
    /// The address is in the query, which anyone can write: the page shows it only for a link this server sent for it,
    /// so that it never says "Use (someone's text) for your account?".
    /// </summary>
    public async Task OnGetAsync()
    {
        var user = UserId is null ? null : await users.FindByIdAsync(UserId);
        var token = ConfirmEmailModel.Decode(Code);
        LinkWorks = user is not null && token is not null && !string.IsNullOrEmpty(Email)
            && await users.VerifyUserTokenAsync(user, users.Options.Tokens.ChangeEmailTokenProvider,
                UserManager<ApplicationUser>.GetChangeEmailTokenPurpose(Email), token);
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = UserId is null ? null : await users.FindByIdAsync(UserId);
        var token = ConfirmEmailModel.Decode(Code);
        var (oldEmail, oldEmailConfirmed) = (user?.Email, user?.EmailConfirmed == true);
        Changed = user is not null && token is not null && !string.IsNullOrEmpty(Email)
            && (await users.ChangeEmailAsync(user, Email, token)).Succeeded;
        if (Changed == true)
        {
            logger.LogInformation(AccountEvents.EmailChanged, "User {UserId} changed the email address", user!.Id);
            // At a confirmed address only, as every notice (an unconfirmed one may be anyone's).
            if (oldEmail is not null && oldEmailConfirmed && !string.Equals(oldEmail, user.Email, StringComparison.OrdinalIgnoreCase))
            {
                emails.SendEmailChanged(user.Id, oldEmail, user.UserName ?? oldEmail);
            }

            // The change gave the account a new security stamp, which ended its sessions; this browser's own carries on.
            if (users.GetUserId(User) == user.Id)
            {
                await sessions.RefreshAsync(user);
            }
            else
            {
                await sessions.EndSessionsOnServerAsync(user);
            }
        }

        return Page();
    }
}
