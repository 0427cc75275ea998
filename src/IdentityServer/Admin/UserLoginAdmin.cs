using System.Text.Json.Serialization;
using IdentityServer.Accounts;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;

namespace IdentityServer.Admin;

/// <summary>A provider account connected to a user (sign-in with another OpenID Connect provider).</summary>
public sealed record UserLoginView(
    [property: JsonPropertyName("provider")] string Provider,
    [property: JsonPropertyName("issuer")] string? Issuer,
    [property: JsonPropertyName("account_id")] string AccountId)
{
    public static UserLoginView From(UserLoginInfo login) => new(login.LoginProvider, login.ProviderDisplayName, login.ProviderKey);
}

/// <summary>
/// An admin's view of the provider accounts a user signs in with: list them, or disconnect one (a provider account
/// that was taken over, say). Disconnecting ends every session of the user and revokes the user's tokens, since a
/// session may have come through it; it is audited.
/// </summary>
public sealed class UserLoginAdmin(
    UserManager<ApplicationUser> users, UserSessions sessions, IOpenIddictTokenManager tokens, AuditLog audit)
{
    public async Task<AdminResult<IReadOnlyList<UserLoginView>>> ListAsync(string userId, CancellationToken ct) =>
        await users.FindByIdAsync(userId) is { } user
            ? AdminResult<IReadOnlyList<UserLoginView>>.Ok([.. (await users.GetLoginsAsync(user)).Select(UserLoginView.From)])
            : NoUser(userId);

    /// <summary>Revokes tokens too, so it runs in <see cref="AuditLog.InTransactionAsync{T}"/>, which retries after a deadlock with token writes.</summary>
    public Task<AdminResult<IReadOnlyList<UserLoginView>>> RemoveAsync(string userId, string? provider, string? accountId, AdminActor actor,
        CancellationToken ct)
    {
        // Both name the account to disconnect: without one there is nothing to look for (not a 404 quoting nothing).
        FieldError[] missing = [.. new[] { (Name: "provider", Value: provider), (Name: "account_id", Value: accountId) }
            .Where(parameter => string.IsNullOrEmpty(parameter.Value)).Select(parameter => FieldError.Request(parameter.Name, "required."))];
        if (missing.Length > 0)
        {
            return Task.FromResult(AdminResult<IReadOnlyList<UserLoginView>>.Invalid(missing));
        }

        return audit.InTransactionAsync(async transaction =>
        {
            if (await users.FindByIdAsync(userId) is not { } user)
            {
                return NoUser(userId);
            }

            var logins = await users.GetLoginsAsync(user);
            if (logins.FirstOrDefault(l => l.LoginProvider == provider && l.ProviderKey == accountId) is not { } removed)
            {
                return AdminResult<IReadOnlyList<UserLoginView>>.NotFound($"User '{userId}' has no account '{accountId}' of provider '{provider}'.");
            }

            // Identity gives the user a new security stamp, which ends every session; their rows go and their tokens too.
            var result = await users.RemoveLoginAsync(user, removed.LoginProvider, removed.ProviderKey);
            if (!result.Succeeded)
            {
                return AdminResult<IReadOnlyList<UserLoginView>>.Invalid([.. result.Errors.Select(e => new FieldError(FieldError.InvalidRequest, "account_id", e.Description))]);
            }

            await sessions.EndAllAsync(user.Id, keep: null, ct);
            await tokens.RevokeBySubjectAsync(user.Id, ct);
            audit.Record(actor, AuditAction.UserLoginRemoved, user.Id, before: UserLoginView.From(removed), after: null);
            await audit.CommitAsync(transaction, ct);
            return AdminResult<IReadOnlyList<UserLoginView>>.Ok([.. logins.Where(l => l != removed).Select(UserLoginView.From)]);
        }, ct);
    }

    private static AdminResult<IReadOnlyList<UserLoginView>> NoUser(string userId) =>
        AdminResult<IReadOnlyList<UserLoginView>>.NotFound($"There is no user with id '{userId}'.");
}
