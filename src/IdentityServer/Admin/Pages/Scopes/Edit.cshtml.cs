using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Scopes;

public sealed class EditModel(ScopeAdmin scopes) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string Name { get; set; } = string.Empty;

    [BindProperty]
    public ScopeForm Form { get; set; } = new();

    public bool BuiltIn => Name == AdminApi.Scope;

    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        var result = await scopes.GetAsync(Name, ct);
        if (!result.Succeeded)
        {
            return NotFound();
        }

        Form = ScopeForm.From(result.Value!.Document, result.ETag);
        return Page();
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var document = Form.ToDocument();
        document.Name = Name;
        var result = await scopes.ReplaceAsync(Name, document, Form.ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                Notice = "Changes saved.";
                return Redirect($"~/admin/scopes/{Uri.EscapeDataString(Name)}");
            case AdminOutcome.NotFound:
                return NotFound();
            case AdminOutcome.PreconditionFailed:
                FormError = "Someone else changed this scope after you opened it. Nothing was saved; your edits are still in the form. Save again to apply them.";
                Form.ETag = result.ETag ?? (await scopes.GetAsync(Name, ct)).ETag;
                return Page();
            default:
                ShowFailure(result, ScopeForm.Fields);
                return Page();
        }
    }
}
