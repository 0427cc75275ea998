using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Clients;

public sealed class SecretModel(ClientAdmin clients) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string ClientId { get; set; } = string.Empty;

    [BindProperty]
    public string? ETag { get; set; }

    public string? NewSecret { get; private set; }

    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        var result = await clients.GetAsync(ClientId, ct);
        ETag = result.ETag;
        return result.Succeeded ? Page() : NotFound();
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        var result = await clients.RotateSecretAsync(ClientId, ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                NewSecret = result.Value!.Secret;
                return Page();
            case AdminOutcome.NotFound:
                return NotFound();
            default:
                FormError = result.Outcome == AdminOutcome.PreconditionFailed
                    ? "Someone else changed this client after you opened this page; nothing was changed. Check it and try again."
                    : string.Join(" ", result.Errors.Select(e => e.Description));
                ETag = (await clients.GetAsync(ClientId, ct)).ETag;
                return Page();
        }
    }
}
