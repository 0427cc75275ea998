using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>The link sent to a new email address. A GET only shows a button; the POST makes the change.</summary>
[AllowAnonymous]
public sealed class ConfirmEmailChangeModel(UserManager<ApplicationUser> users, AccountSessions sessions, ILogger<ConfirmEmailChangeModel> logger)
    : PageModel
{
    [BindProperty(SupportsGet = true)]
    public string? UserId { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Email { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Code { get; set; }

    public bool? Changed { get; private set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        var user = UserId is null ? null : await users.FindByIdAsync(UserId);
        var token = ConfirmEmailModel.Decode(Code);
        Changed = user is not null && token is not null && !string.IsNullOrEmpty(Email)
            && (await users.ChangeEmailAsync(user, Email, token)).Succeeded;
        if (Changed == true)
        {
            logger.LogInformation(AccountEvents.EmailChanged, "User {UserId} changed the email address", user!.Id);
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
