using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>
/// An email address names one account at most (the login page accepts it in place of the user name), but an
/// account need not have one: admins create service and bootstrap accounts without. Identity's own
/// RequireUniqueEmail would demand an address of every account, so uniqueness is checked here instead.
/// </summary>
public sealed class OptionalUniqueEmailValidator : IUserValidator<ApplicationUser>
{
    public async Task<IdentityResult> ValidateAsync(UserManager<ApplicationUser> manager, ApplicationUser user)
    {
        if (string.IsNullOrEmpty(user.Email))
        {
            return IdentityResult.Success;
        }

        if (!new EmailAddressAttribute().IsValid(user.Email))
        {
            return IdentityResult.Failed(manager.ErrorDescriber.InvalidEmail(user.Email));
        }

        var owner = await manager.FindByEmailAsync(user.Email);
        return owner is not null && owner.Id != user.Id
            ? IdentityResult.Failed(manager.ErrorDescriber.DuplicateEmail(user.Email))
            : IdentityResult.Success;
    }
}
