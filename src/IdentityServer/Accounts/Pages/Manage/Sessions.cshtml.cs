using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>"Sign out everywhere": every session of the account ends, this one included, and every refresh token is revoked.</summary>
public sealed class SessionsModel(UserManager<ApplicationUser> users, AccountSessions sessions) : PageModel
{
    public IActionResult OnGet() => Page();

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        await sessions.EndOtherSessionsAsync(user, includingThisOne: true, "sign out everywhere");
        return RedirectToPage("/Accounts/Pages/Logout", new { everywhere = true });
    }
}
