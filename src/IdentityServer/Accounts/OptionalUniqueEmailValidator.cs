using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Identity;
using MimeKit;

namespace IdentityServer.Accounts;

/// <summary>
/// An email address names one account at most (the login page accepts it in place of the user name), but an
/// account need not have one: admins create service and bootstrap accounts without. Identity's own
/// RequireUniqueEmail would demand an address of every account, so uniqueness is checked here instead. Since the
/// login page looks a name up as a user name first and as an email second, no account's user name may be another
/// account's email, or the other way round. An address must also be one mail can be sent to: some pass the
/// <see cref="EmailAddressAttribute"/> check (<c>a(@example.com</c>, <c>a b@example.com</c>) but not MimeKit's parser.
/// </summary>
public sealed class OptionalUniqueEmailValidator : IUserValidator<ApplicationUser>
{
    public async Task<IdentityResult> ValidateAsync(UserManager<ApplicationUser> manager, ApplicationUser user)
    {
        if (user.UserName is { } name && name.Contains('@') && await manager.FindByEmailAsync(name) is { } emailOwner && emailOwner.Id != user.Id)
        {
            return IdentityResult.Failed(manager.ErrorDescriber.DuplicateUserName(name));
        }

        if (string.IsNullOrEmpty(user.Email))
        {
            return IdentityResult.Success;
        }

        if (!new EmailAddressAttribute().IsValid(user.Email) || !IsDeliverable(user.Email))
        {
            return IdentityResult.Failed(manager.ErrorDescriber.InvalidEmail(user.Email));
        }

        var owner = await manager.FindByEmailAsync(user.Email) ?? await manager.FindByNameAsync(user.Email);
        return owner is not null && owner.Id != user.Id
            ? IdentityResult.Failed(manager.ErrorDescriber.DuplicateEmail(user.Email))
            : IdentityResult.Success;
    }

    /// <summary>Whether MimeKit reads <paramref name="address"/> as exactly that one mailbox (what sending needs).</summary>
    private static bool IsDeliverable(string address) =>
        MailboxAddress.TryParse(address, out var mailbox) && string.Equals(mailbox.Address, address, StringComparison.Ordinal);
}
