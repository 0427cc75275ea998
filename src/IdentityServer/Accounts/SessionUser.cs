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
/// <item><c>Accounts:SessionMaxLifetime</c> (as it was then) after the session began, however active it stays: the row's expiry.</item>
/// </list>
/// The check is one query for the user and the session's row; the pages read the user next anyway, and the store hands
/// back the instance it tracks.
/// </summary>
public static class SessionUser
{
    private const string RenewingKey = "IdentityServer.Accounts.SessionRenewing";

    public static async Task RefuseEndedSessionsAsync(CookieValidatePrincipalContext context)
    {
        // Identity's validator first: every interval it re-reads the account and renews the cookie's claims.
        await SecurityStampValidator.ValidatePrincipalAsync(context);
        if (context.Principal is not { } session)
        {
            return;
        }

        var services = context.HttpContext.RequestServices;
        // Every sign-in records auth_time; a session without it has no age to trust. Its maximum lifetime is the row's
        // (checked with it below), counted from when the session began: auth_time may be earlier, a provider's.
        var untrusted = SessionClaims.GetAuthenticationTime(session) is null;
        if (untrusted || await GetSessionUserAsync(services, session) is null)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(IdentityConstants.ApplicationScheme);
            return;
        }

        // A cookie about to be re-issued (by Identity's validator every interval, or by sliding expiration) marks its
        // session as active, for the sessions page; only once the session is known to be live.
        if (context.ShouldRenew || context.HttpContext.Items.ContainsKey(RenewingKey))
        {
            await services.GetRequiredService<UserSessions>().SeenAsync(SessionClaims.GetSessionId(session)!, CancellationToken.None);
        }
    }

    /// <summary>Sliding expiration is decided before the principal is validated: note it for <see cref="RefuseEndedSessionsAsync"/>.</summary>
    public static Task NoteSlidingRenewal(CookieSlidingExpirationContext context)
    {
        if (context.ShouldRenew)
        {
            context.HttpContext.Items[RenewingKey] = true;
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// The session's user, or null when there is none, the session's row is gone (a cookie from before sessions had
    /// rows has none) or the session's security stamp is no longer the user's.
    /// </summary>
    private static async Task<ApplicationUser?> GetSessionUserAsync(IServiceProvider services, ClaimsPrincipal session)
    {
        var users = services.GetRequiredService<UserManager<ApplicationUser>>();
        if (users.GetUserId(session) is not { } userId || SessionClaims.GetSessionId(session) is not { } sessionId)
        {
            return null;
        }

        var user = await services.GetRequiredService<UserSessions>().FindUserAsync(userId, sessionId, CancellationToken.None);
        if (user is null)
        {
            // Signed out (a copy of the cookie, or the browser ended from the sessions page), ended by a change to the
            // account, or the user deleted: worth seeing when a cookie keeps coming back.
            services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(SessionUser)).LogInformation(AccountEvents.EndedSessionRefused,
                "A cookie of session {SessionId} of user {UserId} was refused: the session has ended", sessionId, userId);
            return null;
        }

        if (!users.SupportsUserSecurityStamp)
        {
            return user;
        }

        var stamp = session.FindFirstValue(users.Options.ClaimsIdentity.SecurityStampClaimType);
        return string.Equals(stamp, await users.GetSecurityStampAsync(user), StringComparison.Ordinal) ? user : null;
    }
}
