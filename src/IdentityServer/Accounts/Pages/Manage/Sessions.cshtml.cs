using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages.Manage;

/// <summary>
/// The account's signed-in browsers: each can be signed out from here (its cookie stops working at its next request),
/// or all of them at once with "sign out everywhere", which also revokes every refresh token.
/// </summary>
public sealed class SessionsModel(UserManager<ApplicationUser> users, AccountSessions sessions, UserSessions sessionRows,
    Logout.FrontChannelLogout frontChannel, ILogger<SessionsModel> logger) : PageModel
{
    public IReadOnlyList<UserSession> Sessions { get; private set; } = [];

    public string? ThisSessionId { get; private set; }

    [TempData]
    public string? StatusMessage { get; set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        Sessions = await sessionRows.ListAsync(user.Id, HttpContext.RequestAborted);
        ThisSessionId = SessionClaims.GetSessionId(User);
        return Page();
    }

    /// <summary>Signs one other browser out (its refresh tokens stay: see the page); this browser signs out through the sign-out page.</summary>
    public async Task<IActionResult> OnPostEndAsync(string? id)
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        if (id == SessionClaims.GetSessionId(User))
        {
            StatusMessage = "To sign this browser out, use Sign out.";
        }
        else if (id is { Length: > 0 and <= UserSession.IdLength })
        {
            var ended = await sessionRows.EndAsync(user.Id, id, CancellationToken.None) > 0;
            if (ended)
            {
                logger.LogInformation(AccountEvents.SignedOut, "User {UserId} signed out their session {SessionId} from the sessions page", user.Id, id);
            }

            StatusMessage = ended ? "That browser has been signed out." : "That session had already ended.";
        }

        return RedirectToPage();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (await users.GetUserAsync(User) is not { } user)
        {
            return Challenge();
        }

        // This browser's applications are told in the browser too (front-channel logout), on the signed-out page: their
        // frames are read before the session ends and handed over with the redirect (TempData, protected like a cookie).
        Logout.FrontChannelLogout.HandOver(TempData, await frontChannel.FramesAsync(User, CancellationToken.None));
        await sessions.EndOtherSessionsAsync(user, includingThisOne: true, "sign out everywhere");
        return RedirectToPage("/Accounts/Pages/Logout", new { everywhere = true });
    }

    /// <summary>How the user signed in, in words.</summary>
    public static string Describe(UserSession session)
    {
        var amr = session.MethodList();
        return amr.Contains(SessionClaims.HardwareKey) || amr.Contains(SessionClaims.SoftwareKey) ? "a passkey"
            : amr.Contains(SessionClaims.Federated) ? amr.Contains(SessionClaims.OneTimePassword) ? "a sign-in provider and a second factor" : "a sign-in provider"
            : amr.Contains(SessionClaims.OneTimePassword) ? "password and a second factor"
            : "password";
    }
}
