using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>The applications the user gave access to, each revocable (its tokens with it).</summary>
public sealed class AppsModel(UserManager<ApplicationUser> users, ConnectedApps connectedApps) : PageModel
{
    public IReadOnlyList<ConnectedApps.App> Apps { get; private set; } = [];

    [TempData]
    public string? StatusMessage { get; set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (users.GetUserId(User) is not { } userId)
        {
            return Challenge();
        }

        Apps = await connectedApps.ListAsync(userId, HttpContext.RequestAborted);
        return Page();
    }

    public async Task<IActionResult> OnPostRevokeAsync(string applicationId)
    {
        if (users.GetUserId(User) is not { } userId)
        {
            return Challenge();
        }

        var app = (await connectedApps.ListAsync(userId, HttpContext.RequestAborted)).FirstOrDefault(a => a.ApplicationId == applicationId);
        if (app is not null && await connectedApps.RevokeAsync(userId, applicationId, HttpContext.RequestAborted))
        {
            StatusMessage = $"{app.Name} no longer has access to your account.";
        }

        return RedirectToPage();
    }
}
