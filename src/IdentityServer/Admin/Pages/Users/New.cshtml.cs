using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Users;

public sealed class NewModel(UserAdmin users) : AdminPageModel
{
    [BindProperty]
    public UserForm Form { get; set; } = new();

    public IReadOnlyList<string> Roles { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct) => Roles = await users.RoleNamesAsync(ct);

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        Roles = await users.RoleNamesAsync(ct);
        var (document, error) = Form.ToDocument();
        var result = document is null ? AdminResult<UserView>.Invalid([error!]) : await users.CreateAsync(document, Actor, ct);
        if (!result.Succeeded)
        {
            ShowFailure(result, UserForm.Fields);
            return Page();
        }

        Notice = $"User {result.Value!.UserName} created.";
        return Redirect($"~/admin/users/{Uri.EscapeDataString(result.Value.Id)}");
    }
}
