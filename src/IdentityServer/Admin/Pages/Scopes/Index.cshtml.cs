using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Scopes;

public sealed class IndexModel(ScopeAdmin scopes) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string? Search { get; set; }

    [BindProperty(SupportsGet = true, Name = "p")]
    public int? PageNumber { get; set; }

    public PageOf<ScopeEntry> Result { get; private set; } = new([], 0, 1, PageOf<ScopeEntry>.DefaultPageSize);

    public string PagerUrl => Url.Content("~/admin/scopes") + $"?search={Uri.EscapeDataString(Search ?? string.Empty)}";

    public async Task OnGetAsync(CancellationToken ct) => Result = await scopes.ListAsync(Search, PageNumber, null, ct);
}
