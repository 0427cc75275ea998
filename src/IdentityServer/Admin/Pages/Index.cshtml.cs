using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Admin.Pages;

public sealed class IndexModel(ApplicationDbContext db, AuditLog audit) : AdminPageModel
{
    public int Clients { get; private set; }

    public int Scopes { get; private set; }

    public int Users { get; private set; }

    public int Roles { get; private set; }

    public IReadOnlyList<AuditEntry> Recent { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct)
    {
        Clients = await db.Set<OpenIddictEntityFrameworkCoreApplication>().CountAsync(ct);
        Scopes = await db.Set<OpenIddictEntityFrameworkCoreScope>().CountAsync(ct);
        Users = await db.Users.CountAsync(ct);
        Roles = await db.Roles.CountAsync(ct);
        Recent = await audit.ListAsync(10, null, null, null, ct);
    }
}
