using System.ComponentModel.DataAnnotations;
using IdentityServer.Shared;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>My account: the profile (display name), the email address and the way to everything else.</summary>
public sealed class IndexModel(UserManager<ApplicationUser> users, ILogger<IndexModel> logger) : PageModel
{
    public ApplicationUser Account { get; private set; } = null!;

    [BindProperty]
    [StringLength(200, ErrorMessage = "A name has at most 200 characters.")]
    public string? DisplayName { get; set; }

    [TempData]
    public string? StatusMessage { get; set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        Account = user;
        DisplayName = user.DisplayName;
        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        Account = user;
        // The name goes to applications in the id token's name claim and to the passkey providers: held to the rules of
        // the other names people are shown (a client's, a scope's).
        if (DisplayName is { } name && !DisplayText.IsAcceptable(name))
        {
            ModelState.AddModelError(nameof(DisplayName), "A name " + DisplayText.Problem);
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        user.DisplayName = string.IsNullOrWhiteSpace(DisplayName) ? null : DisplayName.Trim();
        await users.UpdateAsync(user);
        logger.LogInformation(AccountEvents.ProfileUpdated, "User {UserId} updated the profile", user.Id);
        StatusMessage = "Your profile has been saved.";
        return RedirectToPage();
    }
}
