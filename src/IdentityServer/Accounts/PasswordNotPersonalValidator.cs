using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>
/// A password must not be, or contain, the account's user name, email address or the email's local part
/// (case-insensitively): those are the first guesses of anyone who knows the account.
/// </summary>
public sealed class PasswordNotPersonalValidator : IPasswordValidator<ApplicationUser>
{
    /// <summary>Shorter names are not checked for containment (a two-letter name occurs in many good passwords).</summary>
    private const int MinimumLength = 3;

    public const string ErrorCode = "PasswordContainsPersonalInformation";

    public Task<IdentityResult> ValidateAsync(UserManager<ApplicationUser> manager, ApplicationUser user, string? password)
    {
        if (string.IsNullOrEmpty(password))
        {
            return Task.FromResult(IdentityResult.Success);
        }

        var email = user.Email ?? string.Empty;
        var at = email.IndexOf('@', StringComparison.Ordinal);
        string?[] personal = [user.UserName, email, at > 0 ? email[..at] : null];
        foreach (var value in personal)
        {
            if (string.IsNullOrWhiteSpace(value))
            {
                continue;
            }

            if (password.Equals(value, StringComparison.OrdinalIgnoreCase)
                || (value.Length >= MinimumLength && password.Contains(value, StringComparison.OrdinalIgnoreCase)))
            {
                return Task.FromResult(IdentityResult.Failed(new IdentityError
                {
                    Code = ErrorCode,
                    Description = "The password must not contain your user name or email address.",
                }));
            }
        }

        return Task.FromResult(IdentityResult.Success);
    }
}
