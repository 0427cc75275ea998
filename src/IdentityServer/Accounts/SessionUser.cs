using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts;

/// <summary>
/// A session cookie is refused on the first request after its session ended:
/// <list type="bullet">
/// <item>its row on the server is gone (<see cref="UserSession"/>): signed out, here or from another browser's
/// sessions page, so a copy of the cookie is refused too;</item>
/// <item>its user's security stamp changed: sign out everywhere, a password change or reset, an admin's lockout or one
/// from wrong passwords on the account pages. ASP.NET Core Identity's own validator looks only every
/// <c>Accounts:SessionValidationInterval</c>, and in that gap an ended session could still get codes, approve
/// devices, change the account, or renew itself from the account pages (they re-issue the cookie with the current
/// stamp);</item>
/// <item><c>Accounts:SessionMaxLifetime</c> after the sign-in, however active it stays.</item>
/// </list>
/// The check is one query for the user and the session's row; the pages read the user next anyway, and the store hands
/// back the instance it tracks.
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
        if (tooOld || await GetSessionUserAsync(services, session, CancellationToken.None) is null)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(IdentityConstants.ApplicationScheme);
        }
    }

    /// <summary>A renewed cookie (sliding expiration) marks its session as seen, so the sessions page can leave out idle ones.</summary>
    public static async Task RecordRenewalAsync(CookieSlidingExpirationContext context)
    {
        if (context.ShouldRenew && SessionClaims.GetSessionId(context.Principal!) is { } sessionId)
        {
            await context.HttpContext.RequestServices.GetRequiredService<UserSessions>().SeenAsync(sessionId, CancellationToken.None);
        }
    }

    /// <summary>
    /// The session's user, or null when there is none, the session's row is gone (a cookie from before sessions had
    /// rows has none) or the session's security stamp is no longer the user's.
    /// </summary>
    private static async Task<ApplicationUser?> GetSessionUserAsync(IServiceProvider services, ClaimsPrincipal session, CancellationToken ct)
    {
        var users = services.GetRequiredService<UserManager<ApplicationUser>>();
        if (users.GetUserId(session) is not { } userId || SessionClaims.GetSessionId(session) is not { } sessionId)
        {
            return null;
        }

        var user = await services.GetRequiredService<UserSessions>().FindUserAsync(userId, sessionId, ct);
        if (user is null || !users.SupportsUserSecurityStamp)
        {
            return user;
        }

        var stamp = session.FindFirstValue(users.Options.ClaimsIdentity.SecurityStampClaimType);
        return string.Equals(stamp, await users.GetSecurityStampAsync(user), StringComparison.Ordinal) ? user : null;
    }
}
