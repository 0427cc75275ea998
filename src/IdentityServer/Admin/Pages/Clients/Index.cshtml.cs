using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Clients;

public sealed class IndexModel(ClientAdmin clients) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string? Search { get; set; }

    [BindProperty(SupportsGet = true, Name = "p")]
    public int? PageNumber { get; set; }

    public PageOf<ClientEntry> Result { get; private set; } = new([], 0, 1, PageOf<ClientEntry>.DefaultPageSize);

    public string PagerUrl => Url.Content("~/admin/clients") + $"?search={Uri.EscapeDataString(Search ?? string.Empty)}";

    public async Task OnGetAsync(CancellationToken ct) => Result = await clients.ListAsync(Search, PageNumber, null, ct);
}
