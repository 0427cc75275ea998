using IdentityServer.Hosting;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

/// <summary>Signing out of our own pages: a GET only asks, so a link cannot sign anyone out.</summary>
[AllowAnonymous]
public sealed class LogoutModel(SignInManager<ApplicationUser> signInManager, AccountSessions sessions, Logout.FrontChannelLogout frontChannel,
    External.ProviderSignOut providerSignOut, ILogger<LogoutModel> logger) : PageModel
{
    public bool SignedOut { get; private set; }

    /// <summary>The applications' front-channel logout pages, loaded in hidden frames once signed out.</summary>
    public IReadOnlyList<string> FrontChannelFrames { get; private set; } = [];

    /// <summary>Set after "sign out everywhere", which has already signed this browser out.</summary>
    [BindProperty(SupportsGet = true)]
    public bool Everywhere { get; set; }

    /// <summary>
    /// Set after the account deleted itself (which has already signed this browser out), handed over in TempData rather
    /// than the URL, so that a link cannot tell anyone their account was deleted.
    /// </summary>
    [TempData]
    public bool Deleted { get; set; }

    public void OnGet()
    {
        SignedOut = (Everywhere || Deleted) && User.Identity?.IsAuthenticated != true;
        if (SignedOut)
        {
            FrontChannelFrames = Logout.FrontChannelLogout.TakeOver(TempData);
            HttpContext.AllowFrames(FrontChannelFrames);
        }
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (User.Identity?.IsAuthenticated == true)
        {
            logger.LogInformation(AccountEvents.SignedOut, "User {UserId} signed out", signInManager.UserManager.GetUserId(User));
        }

        // Read before the session ends (its clients' rows may go with it), and never cancelled: a client going away
        // must not leave the session running.
        FrontChannelFrames = await frontChannel.FramesAsync(User, CancellationToken.None);
        var atProvider = providerSignOut.Take(HttpContext, signInManager.UserManager.GetUserId(User));
        await sessions.SignOutAsync();
        if (atProvider is not null)
        {
            // On to the provider's sign-out (after this browser's applications' frames), then the signed-out page; by way
            // of the page's script even without frames, as this form's page allows its forms to go to this server only.
            return new Logout.FrontChannelLogoutResult(
                External.ProviderSignOut.Then(atProvider, Redirect("~" + Authorization.Pages.SignedOutModel.Path)), FrontChannelFrames, pageWithoutFrames: true);
        }

        HttpContext.AllowFrames(FrontChannelFrames);
        SignedOut = true;
        return Page();
    }
}
