using System.ComponentModel.DataAnnotations;
using System.Globalization;
using IdentityServer.Accounts.Email;
using IdentityServer.Accounts.External;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;

namespace IdentityServer.Accounts.Pages;

/// <summary>
/// Sign in with a user name or email and password (then a second factor when the account has one), or with a
/// passkey. Every failure reads the same, so the page never tells whether an account exists or is locked.
/// </summary>
[AllowAnonymous]
public sealed class LoginModel(
    SignInManager<ApplicationUser> signInManager,
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    LoginHints loginHints,
    ExternalProviders externalProviders,
    IOptions<AccountsOptions> accounts,
    ILogger<LoginModel> logger) : PageModel
{
    /// <summary>One message for every failure, so the page never tells whether an account exists.</summary>
    public const string FailureMessage = "The user name or password is incorrect.";

    public const string PasskeyFailureMessage = "That passkey could not sign you in.";

    [BindProperty]
    public LoginInput Input { get; set; } = new();

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    /// <summary>The passkey response (<c>navigator.credentials.get()</c> as JSON), posted by passkeys.js.</summary>
    [BindProperty]
    public string? PasskeyCredential { get; set; }

    public string? ErrorMessage { get; private set; }

    /// <summary>The account exists, the password was right, but the email address is not confirmed yet.</summary>
    public bool EmailNotConfirmed { get; private set; }

    public bool RegistrationAllowed => accounts.Value.AllowRegistration;

    /// <summary>The other OpenID Connect providers people may sign in with (<c>ExternalProviders</c>).</summary>
    public IReadOnlyList<ExternalProvider> ExternalProviders => externalProviders.All;

    /// <summary>What the application asked for (<see cref="AuthenticationLevels"/>), when more than a password.</summary>
    public string? RequiredLevel => Url.Read(ReturnUrl, SignInHints.LevelParameter) is var level
        && level is AuthenticationLevels.MultiFactor or AuthenticationLevels.PhishingResistant
            ? level
            : null;

    public void OnGet()
    {
        // The application's login_hint (OpenID Connect Core 3.1.2.1) fills in the user name; the person may change it.
        Input.UserName = loginHints.Read(Url, ReturnUrl) ?? string.Empty;
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
        // Identity answers "not allowed" (email not confirmed) before it looks at the lockout: a lockout holds either way.
        if (result.IsLockedOut || (result.IsNotAllowed && await users.IsLockedOutAsync(user)))
        {
            // Identity does not check the password of a locked-out account: spend that time anyway, as for an unknown one.
            users.PasswordHasher.VerifyHashedPassword(new ApplicationUser(), DummyHash.Value, Input.Password);
            logger.LogWarning(AccountEvents.LockedOut, "Sign-in refused for {UserId}: account locked out", user.Id);
            return Fail("locked out", user.Id);
        }

        if (result.IsNotAllowed)
        {
            // Identity says "not allowed" before it looks at the password: only a right password may learn why.
            if (!user.EmailConfirmed && await users.CheckPasswordAsync(user, Input.Password))
            {
                logger.LogWarning(AccountEvents.SignInFailed, "Sign-in refused for {UserId}: email not confirmed", user.Id);
                EmailNotConfirmed = true;
                return Page();
            }

            await users.AccessFailedAsync(user);
            return Fail("not allowed", user.Id);
        }

        if (!result.Succeeded)
        {
            return Fail("wrong password", user.Id);
        }

        var stepUp = RequiredLevel is not null;
        if (await signInManager.IsTwoFactorEnabledAsync(user) && (stepUp || !await signInManager.IsTwoFactorClientRememberedAsync(user)))
        {
            await sessions.BeginSecondFactorAsync(user, SessionClaims.Password);
            return RedirectToPage("/Accounts/Pages/LoginTwoFactor", new { ReturnUrl = SafeReturnUrl });
        }

        // Always a fresh ticket: whatever cookie the browser held before sign-in is replaced, never upgraded.
        await sessions.SignInAsync(user, "a password", SessionClaims.Password);
        return LocalRedirect(SafeReturnUrl);
    }

    /// <summary>
    /// Off to another provider; back at <see cref="ExternalLoginModel"/>. Started from this page by a form (with its
    /// antiforgery token), since browsers hold the redirect after a form to this page's <c>form-action</c>.
    /// </summary>
    public async Task<IActionResult> OnPostExternalAsync(string? provider, [FromServices] ExternalSignIns externalSignIns)
    {
        ModelState.Clear();
        if (externalProviders.Find(provider) is not { } known || !await externalSignIns.IsReachableAsync(known, HttpContext.RequestAborted))
        {
            ErrorMessage = "That sign-in provider is not available right now. Try again later, or sign in another way.";
            return Page();
        }

        // Signing in again (a session here already: a step-up, an older session) or an application's prompt=login must
        // not be answered from the provider's session alone, and its max_age goes on to the provider. Otherwise the
        // provider's session may answer: the session here then says when the person signed in there, and a page or
        // application that needs a more recent sign-in (a pushed request's prompt=login or max_age, which the return
        // URL does not show) sends them here again, now with a session.
        var fresh = User.Identity?.IsAuthenticated == true
            || Url.Read(ReturnUrl, OpenIddictConstants.Parameters.Prompt)?.Split(' ').Contains(OpenIddictConstants.PromptValues.Login) == true;
        var maxAge = long.TryParse(Url.Read(ReturnUrl, OpenIddictConstants.Parameters.MaxAge), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            ? seconds
            : (long?)null;
        var callback = Url.Page("/Accounts/Pages/ExternalLogin", new { ReturnUrl = SafeReturnUrl });
        return Challenge(externalSignIns.ChallengeProperties(known, callback, connectingUserId: null, fresh, maxAge), known.Name);
    }

    /// <summary>The WebAuthn request options for a passkey sign-in (any of the browser's passkeys for this server).</summary>
    public async Task<IActionResult> OnPostPasskeyOptionsAsync() =>
        Content(await signInManager.MakePasskeyRequestOptionsAsync(user: null), "application/json");

    public async Task<IActionResult> OnPostPasskeyAsync()
    {
        ModelState.Clear();
        if (string.IsNullOrEmpty(PasskeyCredential))
        {
            ErrorMessage = PasskeyFailureMessage;
            return Page();
        }

        PasskeyAssertionResult<ApplicationUser> assertion;
        try
        {
            assertion = await signInManager.PerformPasskeyAssertionAsync(PasskeyCredential);
        }
        catch (InvalidOperationException)
        {
            // No passkey sign-in under way in this browser (expired, or a replayed form).
            assertion = PasskeyAssertionResult.Fail<ApplicationUser>(new PasskeyException("No passkey sign-in is under way."));
        }

        if (!assertion.Succeeded)
        {
            logger.LogWarning(AccountEvents.SignInFailed, "Passkey sign-in failed: {Reason}", assertion.Failure?.Message);
            ErrorMessage = PasskeyFailureMessage;
            return Page();
        }

        var user = assertion.User;
        if (await users.IsLockedOutAsync(user) || !await signInManager.CanSignInAsync(user))
        {
            logger.LogWarning(AccountEvents.SignInFailed, "Passkey sign-in refused for {UserId}: locked out or not allowed", user.Id);
            ErrorMessage = PasskeyFailureMessage;
            return Page();
        }

        // Stores the new signature counter and backup state.
        await users.AddOrUpdatePasskeyAsync(user, assertion.Passkey);
        await users.ResetAccessFailedCountAsync(user);
        var key = assertion.Passkey.IsBackupEligible ? SessionClaims.SoftwareKey : SessionClaims.HardwareKey;
        await sessions.SignInAsync(user, "a passkey", key, SessionClaims.MultipleFactors);
        return LocalRedirect(SafeReturnUrl);
    }

    private string SafeReturnUrl => Url.OursOr(ReturnUrl, "~/");

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
