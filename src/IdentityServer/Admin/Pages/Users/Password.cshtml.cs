using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Users;

public sealed class PasswordModel(UserAdmin users) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string Id { get; set; } = string.Empty;

    [BindProperty]
    public string? Password { get; set; }

    public string? UserName { get; private set; }

    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        var result = await users.GetAsync(Id, ct);
        UserName = result.Value?.UserName;
        return result.Succeeded ? Page() : NotFound();
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await users.ResetPasswordAsync(Id, Password, null, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                Notice = "Password set. The user's sessions and tokens were ended.";
                return Redirect($"~/admin/users/{Uri.EscapeDataString(Id)}");
            case AdminOutcome.NotFound:
                return NotFound();
            default:
                UserName = (await users.GetAsync(Id, ct)).Value?.UserName;
                foreach (var error in result.Errors)
                {
                    ModelState.AddModelError(error.Field == "password" ? nameof(Password) : string.Empty, error.Description);
                }

                return Page();
        }
    }
}
