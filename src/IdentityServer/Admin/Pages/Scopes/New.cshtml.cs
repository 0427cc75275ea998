using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Scopes;

public sealed class NewModel(ScopeAdmin scopes) : AdminPageModel
{
    [BindProperty]
    public ScopeForm Form { get; set; } = new();

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await scopes.CreateAsync(Form.ToDocument(), Actor, ct);
        if (!result.Succeeded)
        {
            ShowFailure(result, ScopeForm.Fields);
            return Page();
        }

        Notice = $"Scope {result.Value!.Document.Name} created.";
        return Redirect("~/admin/scopes");
    }
}
