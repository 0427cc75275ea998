using IdentityServer.Accounts.External;
using IdentityServer.Data;
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

    /// <summary>
    /// Removes <paramref name="passkey"/> or <paramref name="login"/> with <paramref name="remove"/> if the account keeps
    /// another way to sign in; null, and nothing removed, if it would not. The check and the removal are one transaction
    /// under a lock per account: two removals at the same moment (two tabs, each removing one of the last two ways) take
    /// turns, and the second sees what the first removed. Identity's concurrency stamp does not stop them: its store
    /// deletes a passkey before the account row's stamp is checked. A failed removal is rolled back.
    /// </summary>
    public static async Task<IdentityResult?> RemoveUnlessLastAsync(ApplicationDbContext db, UserManager<ApplicationUser> users,
        ExternalProviders providers, ApplicationUser user, Func<Task<IdentityResult>> remove, byte[]? passkey = null, UserLoginInfo? login = null)
    {
        await using var transaction = await db.Database.BeginTransactionAsync();
        await TransactionLocks.TakeAsync(db, "sign-in-methods:" + user.Id, CancellationToken.None);
        if (!await RemainWithoutAsync(users, providers, user, passkey, login))
        {
            return null;
        }

        var result = await remove();
        if (result.Succeeded)
        {
            await transaction.CommitAsync();
        }

        return result;
    }

    public const string LastOneRefusal = "This is your only way to sign in: set a password, add a passkey or connect a sign-in provider first.";
}
