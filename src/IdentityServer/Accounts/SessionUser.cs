using System.Security.Claims;
using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>
/// The user a session cookie belongs to, only while the session is still theirs: its security stamp is the user's
/// current one. The cookie handler checks the stamp only every <c>Accounts:SessionValidationInterval</c>; the pages
/// that hand out grants (authorization, device approval) check it on every request, because a code issued by a
/// session that a password reset or "sign out everywhere" has just ended would outlive the revocation of the user's
/// tokens. It costs nothing extra: finding the user is the same lookup.
/// </summary>
public static class SessionUser
{
    public static async Task<ApplicationUser?> GetSessionUserAsync(this UserManager<ApplicationUser> users, ClaimsPrincipal? session)
    {
        var user = session is null ? null : await users.GetUserAsync(session);
        if (user is null || !users.SupportsUserSecurityStamp)
        {
            return user;
        }

        var stamp = session!.FindFirstValue(users.Options.ClaimsIdentity.SecurityStampClaimType);
        return string.Equals(stamp, await users.GetSecurityStampAsync(user), StringComparison.Ordinal) ? user : null;
    }
}
