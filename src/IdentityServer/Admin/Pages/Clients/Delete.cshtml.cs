using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Clients;

public sealed class DeleteModel(ClientAdmin clients) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string ClientId { get; set; } = string.Empty;

    [BindProperty]
    public string? ETag { get; set; }

    public string? Name { get; private set; }

    public async Task<IActionResult> OnGetAsync(CancellationToken ct) => await LoadAsync(ct) ? Page() : NotFound();

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await clients.DeleteAsync(ClientId, ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                Notice = $"Client {ClientId} deleted.";
                return Redirect("~/admin/clients");
            case AdminOutcome.PreconditionFailed:
                FormError = "Someone else changed this client after you opened this page, so it was not deleted. Check it and confirm again.";
                return await LoadAsync(ct) ? Page() : NotFound();
            default:
                return NotFound();
        }
    }

    private async Task<bool> LoadAsync(CancellationToken ct)
    {
        var result = await clients.GetAsync(ClientId, ct);
        Name = result.Value?.Document.ClientName;
        ETag = result.ETag;
        return result.Succeeded;
    }
}
