using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;

namespace IdentityServer.Admin;

/// <summary>
/// The admin scope (with its resource, the admin API's audience) and the admin role exist in every database,
/// created on start before the seed, which may give them to the first admin user and client.
/// </summary>
public sealed class AdminBootstrap(IOpenIddictScopeManager scopes, RoleManager<IdentityRole> roles, ILogger<AdminBootstrap> logger) : IBuiltInSeed
{
    public async Task EnsureAsync(CancellationToken cancellationToken)
    {
        var scope = await scopes.FindByNameAsync(AdminApi.Scope, cancellationToken);
        if (scope is null)
        {
            var descriptor = new OpenIddictScopeDescriptor
            {
                Name = AdminApi.Scope,
                DisplayName = "Administer this identity server",
                Description = "Manage client applications, scopes, users and roles through the admin API.",
            };
            descriptor.Resources.Add(AdminApi.Audience);
            await scopes.CreateAsync(descriptor, cancellationToken);
            logger.LogInformation(AdminEvents.BuiltInCreated, "Created the {Scope} scope (audience {Audience})", AdminApi.Scope, AdminApi.Audience);
        }
        else if (!(await scopes.GetResourcesAsync(scope, cancellationToken)).Contains(AdminApi.Audience))
        {
            var descriptor = new OpenIddictScopeDescriptor();
            await scopes.PopulateAsync(descriptor, scope, cancellationToken);
            descriptor.Resources.Add(AdminApi.Audience);
            await scopes.UpdateAsync(scope, descriptor, cancellationToken);
        }

        if (!await roles.RoleExistsAsync(AdminApi.Role))
        {
            var created = await roles.CreateAsync(new IdentityRole(AdminApi.Role));
            SeedConflictException.ThrowIfDuplicate(created, $"the {AdminApi.Role} role");
            if (!created.Succeeded)
            {
                throw new InvalidOperationException($"Cannot create the {AdminApi.Role} role: {string.Join(" ", created.Errors.Select(e => e.Description))}");
            }

            logger.LogInformation(AdminEvents.BuiltInCreated, "Created the {Role} role", AdminApi.Role);
        }
    }
}
