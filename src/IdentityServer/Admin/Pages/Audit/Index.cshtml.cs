using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Audit;

public sealed class IndexModel(AuditLog audit) : AdminPageModel
{
    private const int PageSize = 50;

    [BindProperty(SupportsGet = true)]
    public string? Type { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? Id { get; set; }

    [BindProperty(SupportsGet = true)]
    public long? Before { get; set; }

    public IReadOnlyList<AuditEntry> Entries { get; private set; } = [];

    public long? NextBefore => Entries.Count == PageSize ? Entries[^1].Id : null;

    public async Task OnGetAsync(CancellationToken ct)
    {
        Type = string.IsNullOrWhiteSpace(Type) ? null : Type;
        Id = string.IsNullOrWhiteSpace(Id) ? null : Id.Trim();
        Entries = await audit.ListAsync(PageSize, Before, Type, Id, ct);
    }
}
