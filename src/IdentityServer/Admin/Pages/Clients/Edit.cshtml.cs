using Microsoft.AspNetCore.Mvc;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Admin.Pages.Clients;

/// <summary>Editing a client, with optimistic concurrency: a change made meanwhile by someone else is never overwritten unseen.</summary>
public sealed class EditModel(ClientAdmin clients, ScopeAdmin scopes) : AdminPageModel
{
    public const string StaleMessage = "Someone else changed this client after you opened it. Nothing was saved. " +
        "Your edits are still in the form: check them against the current client (open it in another tab) and save again to apply them.";

    [BindProperty(SupportsGet = true)]
    public string ClientId { get; set; } = string.Empty;

    [BindProperty]
    public ClientForm Form { get; set; } = new();

    public IReadOnlyList<string> KnownScopes { get; private set; } = [];

    public string? NewSecret { get; private set; }

    public bool HasSecret => Form.TokenEndpointAuthMethod is ClientAuthenticationMethods.ClientSecretBasic or ClientAuthenticationMethods.ClientSecretPost;

    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        var result = await clients.GetAsync(ClientId, ct);
        if (!result.Succeeded)
        {
            return NotFound();
        }

        Form = ClientForm.From(result.Value!.Document, result.ETag);
        KnownScopes = await scopes.AllNamesAsync(ct);
        return Page();
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        KnownScopes = await scopes.AllNamesAsync(ct);
        if (!ModelState.IsValid)
        {
            return Page(); // a field that is not what it must be (a lifetime that is not a whole number): saved as nothing, else
        }

        var (document, error) = Form.ToDocument();
        if (document is null)
        {
            AddErrors([error!], ClientForm.Fields);
            return Page();
        }

        document.ClientId = ClientId;
        document.ClientSecret = null;
        var result = await clients.ReplaceAsync(ClientId, document, Form.ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.NotFound:
                return NotFound();
            case AdminOutcome.PreconditionFailed:
                FormError = StaleMessage;
                // The next save is made against the version that is stored now, which the admin has been told about.
                Form.ETag = result.ETag ?? (await clients.GetAsync(ClientId, ct)).ETag;
                return Page();
            case AdminOutcome.Ok when result.Value!.Secret is { } secret:
                NewSecret = secret;
                Form = ClientForm.From(result.Value.Client.Document, result.ETag);
                ModelState.Clear();
                return Page();
            case AdminOutcome.Ok:
                Notice = "Changes saved.";
                return Redirect($"~/admin/clients/{Uri.EscapeDataString(ClientId)}");
            default:
                ShowFailure(result, ClientForm.Fields);
                return Page();
        }
    }
}
