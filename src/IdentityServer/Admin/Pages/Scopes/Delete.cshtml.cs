using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Scopes;

public sealed class DeleteModel(ScopeAdmin scopes) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string Name { get; set; } = string.Empty;

    [BindProperty]
    public string? ETag { get; set; }

    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        var result = await scopes.GetAsync(Name, ct);
        ETag = result.ETag;
        return result.Succeeded ? Page() : NotFound();
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await scopes.DeleteAsync(Name, ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                Notice = $"Scope {Name} deleted.";
                return Redirect("~/admin/scopes");
            case AdminOutcome.NotFound:
                return NotFound();
            default:
                FormError = result.Outcome == AdminOutcome.PreconditionFailed
                    ? "Someone else changed this scope after you opened this page, so it was not deleted. Check it and confirm again."
                    : string.Join(" ", result.Errors.Select(e => e.Description));
                ETag = (await scopes.GetAsync(Name, ct)).ETag;
                return Page();
        }
    }
}
