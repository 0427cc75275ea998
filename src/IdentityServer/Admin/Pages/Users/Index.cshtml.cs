using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Users;

public sealed class IndexModel(UserAdmin users) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string? Search { get; set; }

    [BindProperty(SupportsGet = true, Name = "p")]
    public int? PageNumber { get; set; }

    public PageOf<UserView> Result { get; private set; } = new([], 0, 1, PageOf<UserView>.DefaultPageSize);

    public string PagerUrl => Url.Content("~/admin/users") + $"?search={Uri.EscapeDataString(Search ?? string.Empty)}";

    public async Task OnGetAsync(CancellationToken ct) => Result = await users.ListAsync(Search, PageNumber, null, ct);
}
