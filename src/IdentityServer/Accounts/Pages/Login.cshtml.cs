using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Accounts.Pages;

[AllowAnonymous]
public sealed class LoginModel(
    SignInManager<ApplicationUser> signInManager,
    UserManager<ApplicationUser> users,
    TimeProvider clock,
    ILogger<LoginModel> logger) : PageModel
{
    /// <summary>One message for every failure, so the page never tells whether an account exists.</summary>
    public const string FailureMessage = "The user name or password is incorrect.";

    [BindProperty]
    public LoginInput Input { get; set; } = new();

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    public string? ErrorMessage { get; private set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = await users.FindByNameAsync(Input.UserName) ?? await users.FindByEmailAsync(Input.UserName);
        if (user is null)
        {
            // Spend the time of a password check anyway, so timing does not reveal unknown accounts.
            users.PasswordHasher.VerifyHashedPassword(new ApplicationUser(), DummyHash.Value, Input.Password);
            return Fail("unknown user");
        }

        var result = await signInManager.CheckPasswordSignInAsync(user, Input.Password, lockoutOnFailure: true);
        if (result.IsLockedOut)
        {
            logger.LogWarning(AccountEvents.LockedOut, "Sign-in refused for {UserId}: account locked out", user.Id);
            return Fail("locked out");
        }

        if (!result.Succeeded)
        {
            return Fail(result.IsNotAllowed ? "not allowed" : "wrong password", user.Id);
        }

        // Always a fresh ticket: whatever cookie the browser held before sign-in is replaced, never upgraded.
        await signInManager.SignInWithClaimsAsync(user, isPersistent: false, SessionClaims.ForSignIn(clock.GetUtcNow(), SessionClaims.Password));
        logger.LogInformation(AccountEvents.SignedIn, "User {UserId} signed in with a password", user.Id);
        return LocalRedirect(Url.IsLocalUrl(ReturnUrl) ? ReturnUrl : "/");
    }

    private PageResult Fail(string reason, string? userId = null)
    {
        logger.LogWarning(AccountEvents.SignInFailed, "Sign-in failed ({Reason}) for user {UserId}", reason, userId ?? "(none)");
        ErrorMessage = FailureMessage;
        return Page();
    }

    private static readonly Lazy<string> DummyHash = new(() =>
        new PasswordHasher<ApplicationUser>().HashPassword(new ApplicationUser(), Guid.NewGuid().ToString()));

    public sealed class LoginInput
    {
        [Required(ErrorMessage = "Enter your user name or email.")]
        public string UserName { get; set; } = string.Empty;

        [Required(ErrorMessage = "Enter your password.")]
        public string Password { get; set; } = string.Empty;
    }
}
