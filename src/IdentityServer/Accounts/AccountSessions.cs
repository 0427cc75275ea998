using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;

namespace IdentityServer.Accounts;

/// <summary>
/// Every way of signing in ends here, so that each session cookie carries <c>auth_time</c> and the right <c>amr</c>
/// (<see cref="SessionClaims"/>), and every way of ending sessions (sign out everywhere, a password change or reset)
/// ends them the same way: a new security stamp (other cookies are refused at their next request, <see cref="SessionUser"/>)
/// and the user's tokens revoked (refresh tokens stop working at once). Each session has its row on the server
/// (<see cref="UserSession"/>), so signing out ends it for a copy of its cookie too.
/// </summary>
public sealed class AccountSessions(
    SignInManager<ApplicationUser> signInManager,
    UserSessions sessionRows,
    SecurityStamps stamps,
    IOpenIddictTokenManager tokens,
    IHttpContextAccessor http,
    External.ProviderSignOut providerSignOut,
    TimeProvider clock,
    ILogger<AccountSessions> logger)
{
    private const string PendingMethodsClaim = "pending_amr";

    private HttpContext Context => http.HttpContext ?? throw new InvalidOperationException("No current request.");

    /// <summary>
    /// A fresh session cookie (never an upgrade of the one the browser held) that records how the user signed in. The
    /// same user signing in again (a step-up, an application asking for a fresh sign-in) continues the session on the
    /// server, so the applications signed in through it are not logged out; another account's session ends.
    /// </summary>
    public Task SignInAsync(ApplicationUser user, string description, params string[] methods) =>
        SignInAsync(user, description, authenticatedAt: null, methods);

    /// <summary>
    /// As above, for a sign-in another party vouched for (a provider's <c>auth_time</c>): the session starts now, but
    /// says the person authenticated at <paramref name="authenticatedAt"/> (never later than now), so that an account
    /// page's recent sign-in, <c>max_age</c> and <c>prompt=login</c> are not met by a provider's older session.
    /// </summary>
    public async Task SignInAsync(ApplicationUser user, string description, DateTimeOffset? authenticatedAt, params string[] methods)
    {
        var current = await Context.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        var continuing = current.Principal is { } held && signInManager.UserManager.GetUserId(held) == user.Id ? SessionClaims.GetSessionId(held) : null;
        if (continuing is null)
        {
            await EndThisSessionAsync();
        }

        var session = await sessionRows.StartAsync(user, clock.GetUtcNow(), methods, Context.Request.Headers.UserAgent.ToString(), continuing,
            Context.RequestAborted);
        if (!methods.Contains(SessionClaims.Federated))
        {
            providerSignOut.Forget(Context); // no provider vouched for this sign-in: none to sign out at
        }

        var authenticated = authenticatedAt is { } vouched && vouched < new DateTimeOffset(session.SignedInAt, TimeSpan.Zero) ? vouched : (DateTimeOffset?)null;
        await signInManager.SignInWithClaimsAsync(user, isPersistent: false, SessionClaims.ForSignIn(session, authenticated));
        logger.LogInformation(AccountEvents.SignedIn, "User {UserId} signed in with {Method} (amr {Amr}), session {SessionId}",
            user.Id, description, session.Methods, session.Id);
    }

    /// <summary>Signs this browser out and ends its session on the server, so a copy of its cookie stops working too.</summary>
    public async Task SignOutAsync()
    {
        await EndThisSessionAsync();
        await signInManager.SignOutAsync();
        providerSignOut.Forget(Context);
    }

    private async Task EndThisSessionAsync()
    {
        var current = await Context.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        if (current.Principal is { } session && SessionClaims.GetSessionId(session) is { } sessionId
            && signInManager.UserManager.GetUserId(session) is { } userId)
        {
            await sessionRows.EndAsync(userId, sessionId, CancellationToken.None);
        }
    }

    /// <summary>
    /// The password was right and a second factor is needed: remember who (and how far they got) in the short-lived
    /// two-factor cookie, not in the session.
    /// </summary>
    public async Task BeginSecondFactorAsync(ApplicationUser user, params string[] methodsSoFar)
    {
        var identity = new ClaimsIdentity(IdentityConstants.TwoFactorUserIdScheme);
        identity.AddClaim(new Claim(ClaimTypes.Name, user.Id));
        identity.AddClaims(methodsSoFar.Select(m => new Claim(PendingMethodsClaim, m)));
        await Context.SignInAsync(IdentityConstants.TwoFactorUserIdScheme, new ClaimsPrincipal(identity));
    }

    /// <summary>The user who passed the first factor and how, or null when no second-factor sign-in is under way.</summary>
    public async Task<(ApplicationUser User, string[] MethodsSoFar)?> GetSecondFactorUserAsync()
    {
        var result = await Context.AuthenticateAsync(IdentityConstants.TwoFactorUserIdScheme);
        var userId = result.Principal?.FindFirstValue(ClaimTypes.Name);
        var user = userId is null ? null : await signInManager.UserManager.FindByIdAsync(userId);
        return user is null ? null : (user, result.Principal!.FindAll(PendingMethodsClaim).Select(c => c.Value).ToArray());
    }

    public async Task CompleteSecondFactorAsync(ApplicationUser user, string[] methodsSoFar, string secondFactor, bool rememberDevice)
    {
        await Context.SignOutAsync(IdentityConstants.TwoFactorUserIdScheme);
        if (rememberDevice)
        {
            await signInManager.RememberTwoFactorClientAsync(user);
        }

        await SignInAsync(user, $"a second factor ({secondFactor})", [.. methodsSoFar, SessionClaims.OneTimePassword, SessionClaims.MultipleFactors]);
    }

    /// <summary>
    /// The account has a new security stamp, which has ended every session of it: re-issues this browser's cookie for
    /// the new stamp, keeping when and how the user signed in, and deletes the other sessions' rows.
    /// </summary>
    public async Task RefreshAsync(ApplicationUser user)
    {
        var current = await Context.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        var kept = current.Principal?.Claims.Where(SessionClaims.IsSessionClaim).Select(c => new Claim(c.Type, c.Value, c.ValueType)).ToList() ?? [];
        await signInManager.SignInWithClaimsAsync(user, current.Properties ?? new AuthenticationProperties(), kept);
        var thisSession = current.Principal is { } session ? SessionClaims.GetSessionId(session) : null;
        await EndSessionsOnServerAsync(user, keep: thisSession);
        if (thisSession is not null)
        {
            await sessionRows.SeenAsync(thisSession, CancellationToken.None); // the cookie was just re-issued
        }
    }

    /// <summary>
    /// Ends the user's sessions but <paramref name="keep"/> on the server, after a new security stamp ended them: their
    /// cookies are refused either way, but this deletes their rows (the sessions page lists only live sessions) and
    /// tells the clients signed in through them (back-channel logout). Not only tidying: leave it out and those
    /// clients are never told.
    /// </summary>
    public Task EndSessionsOnServerAsync(ApplicationUser user, string? keep = null) =>
        sessionRows.EndAllAsync(user.Id, keep, CancellationToken.None);

    /// <summary>
    /// The password typed on an account page, checked as the login page checks it: a locked-out account is refused
    /// without a check, a wrong password counts towards the lockout, a right one clears the count. Otherwise a session
    /// (a stolen one, say) could try passwords there without limit. The lockout gives the account a new security
    /// stamp, so every session ends, a copy of this cookie included, and not only this browser's. A right password
    /// stored in an older format is re-hashed, which also gives the account a new stamp: this session carries on.
    /// </summary>
    public async Task<PasswordCheck> CheckPasswordAsync(ApplicationUser user, string password)
    {
        var stamp = user.SecurityStamp;
        var result = await signInManager.CheckPasswordSignInAsync(user, password, lockoutOnFailure: true);
        if (result.Succeeded)
        {
            await KeepThisSessionAsync(user, stamp);
            return PasswordCheck.Right;
        }

        if (!result.IsLockedOut)
        {
            return PasswordCheck.Wrong;
        }

        logger.LogWarning(AccountEvents.LockedOut, "User {UserId} locked out by wrong passwords on an account page; every session ends", user.Id);
        await stamps.RenewAsync(user, CancellationToken.None);
        await EndSessionsOnServerAsync(user);
        await signInManager.SignOutAsync();
        return PasswordCheck.LockedOut;
    }

    /// <summary>
    /// After a change the user made in this browser: if it gave the account a new security stamp (Identity does for
    /// some changes), this browser's session is re-issued, since every request checks the stamp.
    /// </summary>
    public async Task KeepThisSessionAsync(ApplicationUser user, string? stampBefore)
    {
        if (!string.Equals(user.SecurityStamp, stampBefore, StringComparison.Ordinal))
        {
            await RefreshAsync(user);
        }
    }

    /// <summary>
    /// Ends every other session of the user: a new security stamp, and every token issued to the user revoked.
    /// This browser's own session is re-issued unless <paramref name="includingThisOne"/>.
    /// </summary>
    public async Task EndOtherSessionsAsync(ApplicationUser user, bool includingThisOne, string reason, bool stampAlreadyUpdated = false)
    {
        if (!stampAlreadyUpdated)
        {
            await stamps.RenewAsync(user, CancellationToken.None);
        }

        var revoked = await tokens.RevokeBySubjectAsync(user.Id, Context.RequestAborted);
        if (includingThisOne)
        {
            await EndSessionsOnServerAsync(user);
            // This browser's session may be another account's (a reset link opened where someone else is signed in).
            await SignOutAsync();
        }
        else
        {
            await RefreshAsync(user);
        }

        logger.LogInformation(AccountEvents.SignedOutEverywhere, "Sessions of user {UserId} ended ({Reason}); {Count} tokens revoked", user.Id, reason, revoked);
    }
}

/// <summary>What an account page's password check found.</summary>
public enum PasswordCheck
{
    Right,
    Wrong,

    /// <summary>Locked out, now or before: every session of the account has ended.</summary>
    LockedOut,
}
