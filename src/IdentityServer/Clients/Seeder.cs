using IdentityServer.Accounts;
using IdentityServer.Data;
using IdentityServer.Hosting;
using IdentityServer.Shared;
using System.Text.Json;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Clients;

/// <summary>
/// Applies the <c>Seed</c> configuration section on every start: creates or updates scopes, clients and users,
/// never deletes anything. Every entry is validated before anything is written, so a bad entry changes nothing.
/// What it changes is in the audit log (actor <c>seed</c>), each change with its entry in one transaction: the seed
/// puts back what an administrator deleted or changed since (a seeded client, a seeded user's role), and the audit
/// log is where an administrator sees that it did.
/// </summary>
public sealed class Seeder(
    IConfiguration configuration,
    IOpenIddictApplicationManager applications,
    IOpenIddictScopeManager scopes,
    UserManager<ApplicationUser> users,
    RoleManager<IdentityRole> roles,
    Admin.AuditLog audit,
    Authorization.ServerAudience serverAudience,
    ILogger<Seeder> logger)
{
    public const string Section = "Seed";

    /// <summary>Scopes every client may be granted without registering them.</summary>
    public static readonly IReadOnlySet<string> StandardScopes = new HashSet<string>(StringComparer.Ordinal)
    {
        Scopes.OpenId, Scopes.Profile, Scopes.Email, Scopes.Roles, Scopes.OfflineAccess,
    };

    public async Task SeedAsync(CancellationToken cancellationToken)
    {
        var section = configuration.GetSection(Section);
        var scopeEntries = ConfigurationJson.ReadList<ScopeDocument>(section.GetSection("Scopes"));
        var clientEntries = ConfigurationJson.ReadList<ClientDocument>(section.GetSection("Clients"));
        var userEntries = ConfigurationJson.ReadList<UserSeedDocument>(section.GetSection("Users"));

        var seededScopes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (path, scope) in scopeEntries)
        {
            if (string.IsNullOrWhiteSpace(scope.Name) || scope.Name.Contains(' '))
            {
                throw new StartupConfigurationException($"{path}: name is required and has no spaces.");
            }

            var bad = scope.Resources.FirstOrDefault(r => !AbsoluteUris.TryParse(r, out _));
            if (bad is not null)
            {
                throw new StartupConfigurationException($"{path} (scope '{scope.Name}'): resources: '{bad}' is not an absolute URI.");
            }

            if (scope.Resources.FirstOrDefault(serverAudience.IsThisServer) is { } issuer)
            {
                throw new StartupConfigurationException($"{path} (scope '{scope.Name}'): resources: '{issuer}' {Authorization.ServerAudience.Problem}");
            }

            seededScopes.Add(scope.Name);
        }

        var knownScopes = new HashSet<string>(StandardScopes.Concat(seededScopes), StringComparer.Ordinal);
        await foreach (var stored in scopes.ListAsync(count: null, offset: null, cancellationToken))
        {
            knownScopes.Add(await scopes.GetNameAsync(stored, cancellationToken) ?? string.Empty);
        }

        foreach (var (path, client) in clientEntries)
        {
            var errors = ClientDocumentValidator.Validate(client, knownScopes.Contains, secretRequired: true, serverAudience.IsThisServer);
            if (errors.Count > 0)
            {
                throw new StartupConfigurationException(
                    $"{path} (client_id '{client.ClientId}'): {string.Join("; ", errors)}");
            }
        }

        foreach (var (path, user) in userEntries)
        {
            if (string.IsNullOrWhiteSpace(user.UserName))
            {
                throw new StartupConfigurationException($"{path}: user_name is required.");
            }

            // The password policy is checked here too, not only when the user is created below: otherwise a too-short
            // password would stop the start after the scopes and clients before it were already written.
            if (!string.IsNullOrEmpty(user.Password))
            {
                foreach (var validator in users.PasswordValidators)
                {
                    var candidate = new ApplicationUser { UserName = user.UserName, Email = user.Email };
                    Check(await validator.ValidateAsync(users, candidate, user.Password), path, "password");
                }
            }
        }

        foreach (var (_, scope) in scopeEntries)
        {
            await UpsertScopeAsync(scope, cancellationToken);
        }

        foreach (var (_, client) in clientEntries)
        {
            await UpsertClientAsync(client, cancellationToken);
        }

        foreach (var (path, user) in userEntries)
        {
            await UpsertUserAsync(path, user);
        }
    }

    private async Task UpsertScopeAsync(ScopeDocument scope, CancellationToken ct)
    {
        await using var transaction = await audit.BeginAsync(ct);
        var descriptor = new OpenIddictScopeDescriptor();
        var existing = await scopes.FindByNameAsync(scope.Name!, ct);
        if (existing is not null)
        {
            await scopes.PopulateAsync(descriptor, existing, ct);
        }

        var before = existing is null ? null : DocumentOf(descriptor);

        descriptor.Name = scope.Name;
        descriptor.DisplayName = scope.DisplayName ?? scope.Name;
        descriptor.Description = scope.Description;
        descriptor.Resources.Clear();
        descriptor.Resources.UnionWith(scope.Resources);

        if (existing is null)
        {
            await scopes.CreateAsync(descriptor, ct);
            logger.LogInformation(SeedEvents.ScopeCreated, "Seed created scope {Scope}", scope.Name);
        }
        else
        {
            await scopes.UpdateAsync(existing, descriptor, ct);
        }

        RecordIfChanged(existing is null ? Admin.AuditAction.ScopeCreated : Admin.AuditAction.ScopeUpdated, scope.Name!, before, DocumentOf(descriptor));
        await audit.CommitAsync(transaction, ct);
    }

    private static ScopeDocument DocumentOf(OpenIddictScopeDescriptor descriptor) => new()
    {
        Name = descriptor.Name,
        DisplayName = descriptor.DisplayName,
        Description = descriptor.Description,
        Resources = [.. descriptor.Resources.Order(StringComparer.Ordinal)],
    };

    /// <summary>Records a creation, or an update that changed what the admin API shows (not every start's rewrite of the same values).</summary>
    private void RecordIfChanged(Admin.AuditAction action, string target, object? before, object after)
    {
        if (before is null || JsonSerializer.Serialize(before, Admin.AuditLog.Json) != JsonSerializer.Serialize(after, Admin.AuditLog.Json))
        {
            audit.Record(Admin.AdminActor.Seed, action, target, before, after);
        }
    }

    private async Task UpsertClientAsync(ClientDocument client, CancellationToken ct)
    {
        await using var transaction = await audit.BeginAsync(ct);
        var descriptor = new OpenIddictApplicationDescriptor();
        var existing = await applications.FindByClientIdAsync(client.ClientId!, ct);
        if (existing is not null)
        {
            await applications.PopulateAsync(descriptor, existing, ct);
        }

        var before = existing is null ? null : ClientDescriptorMapper.ToDocument(descriptor);

        var storedSecret = descriptor.ClientSecret;
        ClientDescriptorMapper.Populate(descriptor, client);
        if (existing is null)
        {
            await applications.CreateAsync(descriptor, ct);
            logger.LogInformation(SeedEvents.ClientCreated, "Seed created client {ClientId}", client.ClientId);
        }
        else
        {
            // The seed's secret is the client's first one only: once stored it may have been rotated (leaked, say), and
            // the seed cannot tell, so the stored one stays (given back as stored, the manager keeps it as it is). Not
            // for a client moved to a method without a secret (private_key_jwt, none): Populate dropped it, and kept it
            // would still be stored for a client that must not use it (and OpenIddict refuses one for a public client).
            if (storedSecret is not null && descriptor.ClientType == ClientTypes.Confidential
                && (client.TokenEndpointAuthMethod ?? ClientAuthenticationMethods.ClientSecretBasic)
                    is ClientAuthenticationMethods.ClientSecretBasic or ClientAuthenticationMethods.ClientSecretPost)
            {
                descriptor.ClientSecret = storedSecret;
            }

            await applications.UpdateAsync(existing, descriptor, ct);
        }

        RecordIfChanged(existing is null ? Admin.AuditAction.ClientCreated : Admin.AuditAction.ClientUpdated, client.ClientId!, before,
            ClientDescriptorMapper.ToDocument(descriptor));
        await audit.CommitAsync(transaction, ct);
    }

    private async Task UpsertUserAsync(string path, UserSeedDocument seed)
    {
        foreach (var role in seed.Roles.Where(r => !string.IsNullOrWhiteSpace(r)))
        {
            if (!await roles.RoleExistsAsync(role))
            {
                Check(await roles.CreateAsync(new IdentityRole(role)), path, "roles");
            }
        }

        await using var transaction = await audit.BeginAsync(CancellationToken.None);
        var user = await users.FindByNameAsync(seed.UserName!);
        var before = user is null ? null : await SeedViewAsync(user);
        if (user is null)
        {
            user = new ApplicationUser { UserName = seed.UserName, Email = seed.Email, EmailConfirmed = seed.EmailVerified };
            Check(string.IsNullOrEmpty(seed.Password)
                ? await users.CreateAsync(user)
                : await users.CreateAsync(user, seed.Password), path, "password");
            logger.LogInformation(SeedEvents.UserCreated, "Seed created user {UserName}", seed.UserName);
        }
        else
        {
            // The password is only set on creation: a user who changed theirs keeps it.
            user.Email = seed.Email;
            user.EmailConfirmed = seed.EmailVerified;
            Check(await users.UpdateAsync(user), path, "email");
        }

        var missing = seed.Roles.Except(await users.GetRolesAsync(user)).ToList();
        if (missing.Count > 0)
        {
            Check(await users.AddToRolesAsync(user, missing), path, "roles");
        }

        RecordIfChanged(before is null ? Admin.AuditAction.UserCreated : Admin.AuditAction.UserUpdated, user.Id, before, await SeedViewAsync(user));
        await audit.CommitAsync(transaction, CancellationToken.None);
    }

    /// <summary>What the seed sets of a user, as the audit log records it.</summary>
    private async Task<object> SeedViewAsync(ApplicationUser user) => new
    {
        id = user.Id,
        user_name = user.UserName,
        email = user.Email,
        email_verified = user.EmailConfirmed,
        roles = (await users.GetRolesAsync(user)).Order(StringComparer.Ordinal).ToArray(),
    };

    private static void Check(IdentityResult result, string path, string field)
    {
        SeedConflictException.ThrowIfDuplicate(result, path);
        if (!result.Succeeded)
        {
            throw new StartupConfigurationException(
                $"{path}: {field}: {string.Join(" ", result.Errors.Select(e => e.Description))}");
        }
    }
}

public static class SeedEvents
{
    public static readonly EventId ScopeCreated = new(4001, nameof(ScopeCreated));
    public static readonly EventId ClientCreated = new(4002, nameof(ClientCreated));
    public static readonly EventId UserCreated = new(4003, nameof(UserCreated));
}
