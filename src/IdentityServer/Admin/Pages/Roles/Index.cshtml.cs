using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Roles;

public sealed class IndexModel(RoleAdmin roles) : AdminPageModel
{
    [BindProperty]
    public string? NewRole { get; set; }

    public IReadOnlyList<RoleView> Roles { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct) => Roles = await roles.ListAsync(ct);

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await roles.CreateAsync(new RoleDocument { Name = NewRole }, Actor, ct);
        if (!result.Succeeded)
        {
            AddErrors(result.Errors, new Dictionary<string, string> { ["name"] = nameof(NewRole) }, prefix: "");
            Roles = await roles.ListAsync(ct);
            return Page();
        }

        Notice = $"Role {result.Value!.Name} created.";
        return Redirect("~/admin/roles");
    }

    public async Task<IActionResult> OnPostDeleteAsync(string? name, CancellationToken ct)
    {
        var result = await roles.DeleteAsync(name ?? string.Empty, Actor, ct);
        if (!result.Succeeded)
        {
            FormError = string.Join(" ", result.Errors.Select(e => e.Description));
            Roles = await roles.ListAsync(ct);
            return Page();
        }

        Notice = $"Role {name} deleted.";
        return Redirect("~/admin/roles");
    }
}
