using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Clients;

/// <summary>Registering a client: pick a kind, get a pre-filled form, see the generated secret once.</summary>
public sealed class NewModel(ClientAdmin clients, ScopeAdmin scopes) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string? Kind { get; set; }

    [BindProperty]
    public ClientForm Form { get; set; } = new();

    public ClientKind? SelectedKind => ClientKind.Find(Kind);

    public IReadOnlyList<string> KnownScopes { get; private set; } = [];

    /// <summary>The client just registered with a generated secret, shown on this response only.</summary>
    public ClientWithSecret? Created { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        KnownScopes = await scopes.AllNamesAsync(ct);
        if (SelectedKind is { } kind)
        {
            Form = kind.Defaults();
        }
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        KnownScopes = await scopes.AllNamesAsync(ct);
        Kind = SelectedKind?.Name ?? ClientKind.All[0].Name;
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

        var result = await clients.CreateAsync(document, Actor, ct);
        if (!result.Succeeded)
        {
            ShowFailure(result, ClientForm.Fields);
            return Page();
        }

        if (result.Value!.Secret is not null)
        {
            Created = result.Value;
            return Page();
        }

        Notice = $"Client {document.ClientId} registered.";
        return Redirect($"~/admin/clients/{Uri.EscapeDataString(document.ClientId!)}");
    }
}
