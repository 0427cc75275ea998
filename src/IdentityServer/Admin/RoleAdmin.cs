using System.Text.Json.Serialization;
using IdentityServer.Accounts;
using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Admin;

[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class RoleDocument
{
    [JsonPropertyName("name")]
    public string? Name { get; set; }
}

public sealed record RoleView(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("user_count")] int UserCount);

/// <summary>Roles users can be given (they reach tokens as <c>role</c> claims under the <c>roles</c> scope).</summary>
public sealed class RoleAdmin(ApplicationDbContext db, RoleManager<IdentityRole> roles, AuditLog audit)
{
    public async Task<IReadOnlyList<RoleView>> ListAsync(CancellationToken ct)
    {
        var counts = await db.UserRoles.AsNoTracking().GroupBy(r => r.RoleId).Select(g => new { g.Key, Count = g.Count() })
            .ToDictionaryAsync(g => g.Key, g => g.Count, ct);
        var all = await db.Roles.AsNoTracking().OrderBy(r => r.Name).ToListAsync(ct);
        return [.. all.Select(r => new RoleView(r.Name!, counts.GetValueOrDefault(r.Id)))];
    }

    public async Task<AdminResult<RoleView>> CreateAsync(RoleDocument document, AdminActor actor, CancellationToken ct)
    {
        var name = document.Name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > ApplicationUser.NameColumnLength || name.Any(char.IsControl) || name.Contains('/'))
        {
            return AdminResult<RoleView>.Invalid("name", $"is required: at most {ApplicationUser.NameColumnLength} characters, no control characters or /.");
        }

        await using var transaction = await audit.BeginAsync(ct);
        if (await roles.RoleExistsAsync(name))
        {
            return AdminResult<RoleView>.Conflict("name", $"role '{name}' already exists.");
        }

        IdentityResult created;
        try
        {
            created = await roles.CreateAsync(new IdentityRole(name));
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            return AdminResult<RoleView>.Conflict("name", $"role '{name}' already exists.");
        }

        if (!created.Succeeded)
        {
            return IdentityErrors.ToResult<RoleView>(created);
        }

        var view = new RoleView(name, 0);
        audit.Record(actor, AuditAction.RoleCreated, name, before: null, after: view);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<RoleView>.Created(view);
    }

    /// <summary>Deletes a role; its users simply no longer have it. The admin role cannot be deleted.</summary>
    public async Task<AdminResult<RoleView>> DeleteAsync(string name, AdminActor actor, CancellationToken ct)
    {
        await using var transaction = await audit.BeginAsync(ct);
        // A name can arrive empty (the roles page's delete form with its field emptied); Identity refuses to look that up.
        var role = string.IsNullOrEmpty(name) ? null : await roles.FindByNameAsync(name);
        if (role is null)
        {
            return AdminResult<RoleView>.NotFound($"There is no role '{name}'.");
        }

        // Compared as Identity finds roles (normalized), so "ADMIN" or "Admin" is the built-in role too.
        if (role.NormalizedName == roles.NormalizeKey(AdminApi.Role))
        {
            return AdminResult<RoleView>.Conflict("name", $"the '{AdminApi.Role}' role is built in (it guards the admin pages) and cannot be deleted.");
        }

        var before = new RoleView(role.Name!, await db.UserRoles.CountAsync(r => r.RoleId == role.Id, ct));
        var deleted = await roles.DeleteAsync(role);
        if (!deleted.Succeeded)
        {
            return IdentityErrors.ToResult<RoleView>(deleted);
        }

        audit.Record(actor, AuditAction.RoleDeleted, name, before, after: null);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<RoleView>.Ok(before);
    }
}
