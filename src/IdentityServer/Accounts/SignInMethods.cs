using IdentityServer.Accounts.External;
using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>
/// The ways an account signs in: a password, a passkey, a provider still configured (one removed from the
/// configuration signs no one in). An account keeps at least one: removing the last would leave it to the password
/// reset, which needs a confirmed email, and strand one without.
/// </summary>
public static class SignInMethods
{
    /// <summary>
    /// Whether the account still has a way to sign in once <paramref name="passkey"/> (a credential id) or
    /// <paramref name="login"/> is removed.
    /// </summary>
    public static async Task<bool> RemainWithoutAsync(UserManager<ApplicationUser> users, ExternalProviders providers, ApplicationUser user,
        byte[]? passkey = null, UserLoginInfo? login = null)
    {
        if (await users.HasPasswordAsync(user)
            || (await users.GetPasskeysAsync(user)).Any(p => passkey is null || !p.CredentialId.AsSpan().SequenceEqual(passkey)))
        {
            return true;
        }

        return (await users.GetLoginsAsync(user)).Any(l => providers.Find(l.LoginProvider) is not null
            && (login is null || l.LoginProvider != login.LoginProvider || l.ProviderKey != login.ProviderKey));
    }

    public const string LastOneRefusal = "This is your only way to sign in: set a password, add a passkey or connect a sign-in provider first.";
}
