using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts;

/// <summary>
/// Identity's sign-in manager, but a remembered device ("Remember this device") counts only while the account's
/// security stamp is the one it was remembered with. Identity checks that cookie's stamp only every
/// <c>Accounts:SessionValidationInterval</c>, so after a password change or reset, or "sign out everywhere", a device
/// remembered before still skipped the second factor until then.
/// </summary>
public sealed class ServerSignInManager(
    UserManager<ApplicationUser> userManager,
    IHttpContextAccessor contextAccessor,
    IUserClaimsPrincipalFactory<ApplicationUser> claimsFactory,
    IOptions<IdentityOptions> optionsAccessor,
    ILogger<SignInManager<ApplicationUser>> logger,
    IAuthenticationSchemeProvider schemes,
    IUserConfirmation<ApplicationUser> confirmation)
    : SignInManager<ApplicationUser>(userManager, contextAccessor, claimsFactory, optionsAccessor, logger, schemes, confirmation)
{
    public override async Task<bool> IsTwoFactorClientRememberedAsync(ApplicationUser user)
    {
        var remembered = await Context.AuthenticateAsync(IdentityConstants.TwoFactorRememberMeScheme);
        return remembered.Principal is { } device
            && device.FindFirstValue(ClaimTypes.Name) == await UserManager.GetUserIdAsync(user)
            && UserManager.SupportsUserSecurityStamp
            && device.FindFirstValue(Options.ClaimsIdentity.SecurityStampClaimType) is { } stamp
            && string.Equals(stamp, await UserManager.GetSecurityStampAsync(user), StringComparison.Ordinal);
    }
}
