using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Users;

public sealed class IndexModel(UserAdmin users, Accounts.External.ExternalProviders providers) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string? Search { get; set; }

    [BindProperty(SupportsGet = true, Name = "p")]
    public int? PageNumber { get; set; }

    public PageOf<UserView> Result { get; private set; } = new([], 0, 1, PageOf<UserView>.DefaultPageSize);

    public string PagerUrl => Url.Content("~/admin/users") + $"?search={Uri.EscapeDataString(Search ?? string.Empty)}";

    /// <summary>The other providers each listed user signs in with, by the names the login page shows.</summary>
    public ILookup<string, string> Providers { get; private set; } = Enumerable.Empty<string>().ToLookup(id => id);

    public async Task OnGetAsync(CancellationToken ct)
    {
        Result = await users.ListAsync(Search, PageNumber, null, ct);
        Providers = (await users.ProvidersOfAsync([.. Result.Items.Select(u => u.Id)], ct))
            .SelectMany(group => group.Select(name => (UserId: group.Key, Name: providers.Find(name)?.DisplayName ?? name)))
            .ToLookup(p => p.UserId, p => p.Name);
    }

    /// <summary>How <paramref name="user"/> signs in: a password, other providers, or nothing yet.</summary>
    public string SignsInWith(UserView user) =>
        string.Join(", ", (user.HasPassword ? ["password"] : Array.Empty<string>()).Concat(Providers[user.Id].Order(StringComparer.Ordinal))) is { Length: > 0 } ways
            ? ways
            : "no password";
}
