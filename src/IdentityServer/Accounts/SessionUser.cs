using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts;

/// <summary>
/// A session cookie is refused on the first request after its user's security stamp changed: sign out everywhere,
/// a password change or reset, an admin's lockout or one from wrong passwords on the account pages. ASP.NET Core Identity's own validator looks only every
/// <c>Accounts:SessionValidationInterval</c>, and in that gap an ended session could still get codes, approve
/// devices, change the account, or renew itself from the account pages (they re-issue the cookie with the current
/// stamp). The check reads the user, which the pages read next anyway: the store hands back the instance it tracks.
/// A session also ends <c>Accounts:SessionMaxLifetime</c> after the sign-in, however active it stays.
/// </summary>
public static class SessionUser
{
    public static async Task RefuseEndedSessionsAsync(CookieValidatePrincipalContext context)
    {
        // Identity's validator first: every interval it re-reads the account and renews the cookie's claims.
        await SecurityStampValidator.ValidatePrincipalAsync(context);
        if (context.Principal is not { } session)
        {
            return;
        }

        var services = context.HttpContext.RequestServices;
        var maxLifetime = services.GetRequiredService<IOptions<AccountsOptions>>().Value.SessionMaxLifetime;
        // Every sign-in records auth_time; a session without it has no age to trust.
        var tooOld = SessionClaims.GetAuthenticationTime(session) is not { } signedInAt
            || services.GetRequiredService<TimeProvider>().GetUtcNow() - signedInAt > maxLifetime;
        if (tooOld || await services.GetRequiredService<UserManager<ApplicationUser>>().GetSessionUserAsync(session) is null)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(IdentityConstants.ApplicationScheme);
        }
    }

    /// <summary>The session's user, or null when there is none or the session's security stamp is no longer theirs.</summary>
    private static async Task<ApplicationUser?> GetSessionUserAsync(this UserManager<ApplicationUser> users, ClaimsPrincipal session)
    {
        var user = await users.GetUserAsync(session);
        if (user is null || !users.SupportsUserSecurityStamp)
        {
            return user;
        }

        var stamp = session.FindFirstValue(users.Options.ClaimsIdentity.SecurityStampClaimType);
        return string.Equals(stamp, await users.GetSecurityStampAsync(user), StringComparison.Ordinal) ? user : null;
    }
}
