using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Users;

public sealed class DeleteModel(UserAdmin users) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string Id { get; set; } = string.Empty;

    [BindProperty]
    public string? ETag { get; set; }

    public string? UserName { get; private set; }

    public async Task<IActionResult> OnGetAsync(CancellationToken ct) => await LoadAsync(ct) ? Page() : NotFound();

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await users.DeleteAsync(Id, ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                Notice = $"User {result.Value!.UserName} deleted.";
                return Redirect("~/admin/users");
            case AdminOutcome.NotFound:
                return NotFound();
            default:
                FormError = result.Outcome == AdminOutcome.PreconditionFailed
                    ? "Someone else changed this user after you opened this page, so it was not deleted. Check it and confirm again."
                    : string.Join(" ", result.Errors.Select(e => e.Description));
                return await LoadAsync(ct) ? Page() : NotFound();
        }
    }

    private async Task<bool> LoadAsync(CancellationToken ct)
    {
        var result = await users.GetAsync(Id, ct);
        UserName = result.Value?.UserName;
        ETag = result.ETag;
        return result.Succeeded;
    }
}
