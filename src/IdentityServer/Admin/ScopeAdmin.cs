using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Shared;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Admin;

public sealed record ScopeEntry(ScopeDocument Document, string ETag)
{
    /// <summary>The admin scope is created and kept by the server itself; it cannot be changed or deleted.</summary>
    public bool BuiltIn => Document.Name == AdminApi.Scope;
}

/// <summary>Managing the stored scopes (the standard OpenID Connect scopes are built in and not stored).</summary>
public sealed class ScopeAdmin(ApplicationDbContext db, IOpenIddictScopeManager scopes, AuditLog audit, Authorization.ServerAudience serverAudience)
{
    public async Task<PageOf<ScopeEntry>> ListAsync(string? search, int? page, int? pageSize, CancellationToken ct)
    {
        var (number, size) = PageOf<ScopeEntry>.Normalize(page, pageSize);
        var query = db.Set<OpenIddictEntityFrameworkCoreScope>().AsNoTracking();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim().ToLowerInvariant();
            query = query.Where(s => s.Name!.ToLower().Contains(term) || (s.DisplayName != null && s.DisplayName.ToLower().Contains(term)));
        }

        var (found, total) = await query.OrderBy(s => s.Name).PageAsync(number, size, ct);
        var items = new List<ScopeEntry>(found.Count);
        foreach (var scope in found)
        {
            items.Add(await EntryAsync(scope, ct));
        }

        return new PageOf<ScopeEntry>(items, total, number, size);
    }

    /// <summary>Every scope name a client may be given: the standard ones and the stored ones.</summary>
    public async Task<IReadOnlyList<string>> AllNamesAsync(CancellationToken ct)
    {
        var stored = await db.Set<OpenIddictEntityFrameworkCoreScope>().AsNoTracking().Select(s => s.Name!).OrderBy(n => n).ToListAsync(ct);
        return [.. Seeder.StandardScopes.Order(StringComparer.Ordinal), .. stored];
    }

    public async Task<AdminResult<ScopeEntry>> GetAsync(string name, CancellationToken ct) =>
        await FindAsync(name, ct) is { } scope
            ? AdminResult<ScopeEntry>.Ok(await EntryAsync(scope, ct), ETagOf(scope))
            : NotFound(name);

    public static IReadOnlyList<FieldError> Validate(ScopeDocument scope, Func<string, bool> isThisServer)
    {
        var errors = new List<FieldError>();
        if (string.IsNullOrWhiteSpace(scope.Name))
        {
            errors.Add(FieldError.Request("name", "is required."));
        }
        else if (scope.Name.Length > 200 || scope.Name.Any(c => c <= ' ' || c > '~' || c is '"' or '\\' or '/' or '?' or '#' or '%'))
        {
            errors.Add(FieldError.Request("name", "must be at most 200 printable ASCII characters with no spaces and none of \" \\ / ? # %."));
        }
        else if (Seeder.StandardScopes.Contains(scope.Name))
        {
            errors.Add(FieldError.Request("name", $"'{scope.Name}' is a standard OpenID Connect scope, built in."));
        }

        if (scope.DisplayName is { Length: > 200 })
        {
            errors.Add(FieldError.Request("display_name", "must be at most 200 characters."));
        }
        else if (scope.DisplayName is { } displayName && !DisplayText.IsAcceptable(displayName))
        {
            errors.Add(FieldError.Request("display_name", DisplayText.Problem));
        }

        if (scope.Description is { Length: > 1000 })
        {
            errors.Add(FieldError.Request("description", "must be at most 1000 characters."));
        }
        else if (scope.Description is { } description && !DisplayText.IsAcceptable(description, allowLineBreaks: true))
        {
            errors.Add(FieldError.Request("description", DisplayText.Problem));
        }

        if (scope.Resources.Count > 20)
        {
            errors.Add(FieldError.Request("resources", "at most 20 are allowed."));
        }

        for (var i = 0; i < scope.Resources.Count; i++)
        {
            if (!AbsoluteUris.TryParse(scope.Resources[i], out _))
            {
                errors.Add(FieldError.Request($"resources[{i}]", $"'{scope.Resources[i]}' is not an absolute URI (the audience an API checks, e.g. https://api.example.com)."));
            }
            else if (isThisServer(scope.Resources[i]))
            {
                errors.Add(FieldError.Request($"resources[{i}]", $"'{scope.Resources[i]}' {Authorization.ServerAudience.Problem}"));
            }
        }

        return errors;
    }

    public async Task<AdminResult<ScopeEntry>> CreateAsync(ScopeDocument document, AdminActor actor, CancellationToken ct)
    {
        var errors = Validate(document, serverAudience.IsThisServer);
        if (errors.Count > 0)
        {
            return AdminResult<ScopeEntry>.Invalid(errors);
        }

        await using var transaction = await audit.BeginAsync(ct);
        if (await scopes.FindByNameAsync(document.Name!, ct) is not null)
        {
            return Duplicate(document.Name!);
        }

        var descriptor = new OpenIddictScopeDescriptor();
        Populate(descriptor, document);
        object scope;
        try
        {
            scope = await scopes.CreateAsync(descriptor, ct);
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            return Duplicate(document.Name!);
        }

        var entry = await EntryAsync(scope, ct);
        audit.Record(actor, AuditAction.ScopeCreated, document.Name!, before: null, after: entry.Document);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<ScopeEntry>.Created(entry, entry.ETag);
    }

    public async Task<AdminResult<ScopeEntry>> ReplaceAsync(string name, ScopeDocument document, string? ifMatch, AdminActor actor, CancellationToken ct)
    {
        if (document.Name is not null && document.Name != name)
        {
            return AdminResult<ScopeEntry>.Invalid("name", "cannot be changed; create a new scope instead.");
        }

        document.Name = name;
        await using var transaction = await audit.BeginAsync(ct);
        var scope = await LockAsync(name, RowLockPurpose.Change, ct);
        if (scope is null)
        {
            return NotFound(name);
        }

        if (name == AdminApi.Scope)
        {
            return BuiltIn();
        }

        if (!ETags.Matches(ifMatch, TokenOf(scope)))
        {
            return AdminResult<ScopeEntry>.Stale(ETagOf(scope));
        }

        var errors = Validate(document, serverAudience.IsThisServer);
        if (errors.Count > 0)
        {
            return AdminResult<ScopeEntry>.Invalid(errors);
        }

        var before = await EntryAsync(scope, ct);
        var descriptor = new OpenIddictScopeDescriptor();
        await scopes.PopulateAsync(descriptor, scope, ct);
        Populate(descriptor, document);
        try
        {
            await scopes.UpdateAsync(scope, descriptor, ct);
        }
        catch (OpenIddictExceptions.ConcurrencyException)
        {
            return ChangedMeanwhile(ifMatch);
        }

        var entry = await EntryAsync(scope, ct);
        audit.Record(actor, AuditAction.ScopeUpdated, name, before.Document, entry.Document);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<ScopeEntry>.Ok(entry, entry.ETag);
    }

    /// <summary>Deletes a scope no client is allowed any more (otherwise their requests for it would start failing).</summary>
    public async Task<AdminResult<ScopeEntry>> DeleteAsync(string name, string? ifMatch, AdminActor actor, CancellationToken ct)
    {
        await using var transaction = await audit.BeginAsync(ct);
        var scope = await LockAsync(name, RowLockPurpose.Delete, ct);
        if (scope is null)
        {
            return NotFound(name);
        }

        if (name == AdminApi.Scope)
        {
            return BuiltIn();
        }

        if (!ETags.Matches(ifMatch, TokenOf(scope)))
        {
            return AdminResult<ScopeEntry>.Stale(ETagOf(scope));
        }

        var users = await ClientsUsingAsync(name, ct);
        if (users.Count > 0)
        {
            return AdminResult<ScopeEntry>.Conflict("name",
                $"clients still use scope '{name}' ({string.Join(", ", users.Take(10))}{(users.Count > 10 ? ", ..." : "")}); remove it from them first.");
        }

        var entry = await EntryAsync(scope, ct);
        try
        {
            await scopes.DeleteAsync(scope, ct);
        }
        catch (OpenIddictExceptions.ConcurrencyException)
        {
            return ChangedMeanwhile(ifMatch);
        }

        audit.Record(actor, AuditAction.ScopeDeleted, name, entry.Document, after: null);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<ScopeEntry>.Ok(entry);
    }

    /// <summary>The clients allowed the scope (their permissions are a JSON array, read here rather than matched as text).</summary>
    private async Task<List<string>> ClientsUsingAsync(string name, CancellationToken ct)
    {
        var permission = Permissions.Prefixes.Scope + name;
        var clients = await db.Set<OpenIddictEntityFrameworkCoreApplication>().AsNoTracking()
            .Where(a => a.Permissions != null)
            .Select(a => new { a.ClientId, a.Permissions })
            .ToListAsync(ct);
        return [.. clients
            .Where(c => System.Text.Json.JsonSerializer.Deserialize<string[]>(c.Permissions!)?.Contains(permission) == true)
            .Select(c => c.ClientId!)
            .Order(StringComparer.Ordinal)
            .Take(11)];
    }

    private static void Populate(OpenIddictScopeDescriptor descriptor, ScopeDocument document)
    {
        descriptor.Name = document.Name;
        descriptor.DisplayName = string.IsNullOrWhiteSpace(document.DisplayName) ? document.Name : document.DisplayName;
        descriptor.Description = string.IsNullOrWhiteSpace(document.Description) ? null : document.Description;
        descriptor.Resources.Clear();
        descriptor.Resources.UnionWith(document.Resources);
    }

    private async Task<object?> FindAsync(string name, CancellationToken ct) =>
        string.IsNullOrEmpty(name) ? null : await scopes.FindByNameAsync(name, ct);

    /// <summary>The scope as stored now, locked until the change's transaction ends (<see cref="LockedRows"/>).</summary>
    private async Task<OpenIddictEntityFrameworkCoreScope?> LockAsync(string name, RowLockPurpose purpose, CancellationToken ct) =>
        await LockedRows.ReadAsync<OpenIddictEntityFrameworkCoreScope>(db, nameof(OpenIddictEntityFrameworkCoreScope.Name), name, purpose, ct);

    /// <summary>
    /// The scope changed between the locked read and the write, which the lock rules out: only a condition the request
    /// sent is answered 412 (RFC 9110 section 15.5.13); without one, a conflict to retry.
    /// </summary>
    private static AdminResult<ScopeEntry> ChangedMeanwhile(string? ifMatch) => ifMatch is not null
        ? AdminResult<ScopeEntry>.Stale(null)
        : AdminResult<ScopeEntry>.Conflict("name", "the scope was changed by another request at the same moment; try again.");

    private async Task<ScopeEntry> EntryAsync(object scope, CancellationToken ct)
    {
        var descriptor = new OpenIddictScopeDescriptor();
        await scopes.PopulateAsync(descriptor, scope, ct);
        return new ScopeEntry(new ScopeDocument
        {
            Name = descriptor.Name,
            DisplayName = descriptor.DisplayName,
            Description = descriptor.Description,
            Resources = [.. descriptor.Resources],
        }, ETagOf(scope)!);
    }

    private static string? TokenOf(object scope) => ((OpenIddictEntityFrameworkCoreScope)scope).ConcurrencyToken;

    private static string? ETagOf(object scope) => ETags.Format(TokenOf(scope));

    private static AdminResult<ScopeEntry> NotFound(string name) => AdminResult<ScopeEntry>.NotFound($"There is no stored scope '{name}'.");

    private static AdminResult<ScopeEntry> Duplicate(string name) => AdminResult<ScopeEntry>.Conflict("name", $"scope '{name}' already exists.");

    private static AdminResult<ScopeEntry> BuiltIn() =>
        AdminResult<ScopeEntry>.Conflict("name", $"the '{AdminApi.Scope}' scope is built in (it guards this API) and cannot be changed or deleted.");
}
