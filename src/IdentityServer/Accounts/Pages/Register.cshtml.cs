using System.ComponentModel.DataAnnotations;
using IdentityServer.Accounts.Email;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts.Pages;

/// <summary>
/// Self-registration, when <c>Accounts:AllowRegistration</c> is on. With confirmed emails required, a taken user name
/// or email answers in the same words as a new account ("check your email"; the address's owner is told by email), so
/// the answer does not tell who has an account. Its timing does, a little: a new account also takes the user validators'
/// queries, the insert and a token (README, "What the pages still reveal").
/// </summary>
[AllowAnonymous]
public sealed class RegisterModel(
    UserManager<ApplicationUser> users,
    AccountSessions sessions,
    LoginHints loginHints,
    AccountEmails emails,
    External.ExternalProviders externalProviders,
    IOptions<AccountsOptions> accounts,
    IOptions<IdentityOptions> identity,
    ILogger<RegisterModel> logger) : PageModel
{
    [BindProperty]
    public RegisterInput Input { get; set; } = new();

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    public int RequiredLength => identity.Value.Password.RequiredLength;

    /// <summary>
    /// The other OpenID Connect providers a new account may come from (those that create accounts): signing up with one
    /// is signing in with it, which the login page starts.
    /// </summary>
    public IReadOnlyList<External.ExternalProvider> SignUpProviders =>
        [.. externalProviders.All.Where(p => p.CreateAccounts ?? accounts.Value.AllowRegistration)];

    public IActionResult OnGet()
    {
        if (!accounts.Value.AllowRegistration)
        {
            return NotFound();
        }

        // An application sending someone to sign up (prompt=create) may already know their email address (login_hint).
        if (loginHints.Read(Url, ReturnUrl) is { } hint && new EmailAddressAttribute().IsValid(hint))
        {
            Input.Email = hint;
        }

        return Page();
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (!accounts.Value.AllowRegistration)
        {
            return NotFound();
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var user = new ApplicationUser { UserName = Input.UserName.Trim(), Email = Input.Email.Trim() };
        // The password policy first: its errors say nothing about other accounts.
        foreach (var validator in users.PasswordValidators)
        {
            AddErrors(await validator.ValidateAsync(users, user, Input.Password), "Input.Password");
        }

        if (!ModelState.IsValid)
        {
            return Page();
        }

        var confirmationRequired = identity.Value.SignIn.RequireConfirmedEmail;
        // The login page takes a user name or an email, so each is checked against both.
        var existing = await users.FindByEmailAsync(user.Email) ?? await users.FindByNameAsync(user.UserName)
            ?? await users.FindByEmailAsync(user.UserName) ?? await users.FindByNameAsync(user.Email);
        if (existing is not null && confirmationRequired)
        {
            // Hashing the password, the longest part of creating an account (not all of it: see the summary).
            users.PasswordHasher.HashPassword(user, Input.Password);
            logger.LogInformation(AccountEvents.RegistrationRefused, "Registration refused: user name or email already in use (user {UserId})", existing.Id);
            if (existing.Email is not null && string.Equals(existing.Email, user.Email, StringComparison.OrdinalIgnoreCase))
            {
                emails.SendAlreadyRegistered(existing.Id, existing.Email, emails.Link("/account/login"), emails.Link("/account/forgot-password"));
            }

            return RedirectToPage("/Accounts/Pages/RegisterCheckEmail");
        }

        var result = await users.CreateAsync(user, Input.Password);
        if (!result.Succeeded)
        {
            AddErrors(result, string.Empty);
            return Page();
        }

        logger.LogInformation(AccountEvents.Registered, "User {UserId} registered", user.Id);
        var code = WebEncoders.Base64UrlEncode(System.Text.Encoding.UTF8.GetBytes(await users.GenerateEmailConfirmationTokenAsync(user)));
        // Where the registration came from (an app's sign-up, prompt=create) rides along, so the confirmed account can
        // sign in and go back there.
        var confirmation = new Dictionary<string, string?> { ["userId"] = user.Id, ["code"] = code };
        if (confirmationRequired && Url.IsOurs(ReturnUrl))
        {
            confirmation["returnUrl"] = ReturnUrl;
        }

        emails.SendEmailConfirmation(user.Id, user.Email, user.UserName, emails.Link("/account/confirm-email", confirmation));

        if (confirmationRequired)
        {
            return RedirectToPage("/Accounts/Pages/RegisterCheckEmail");
        }

        await sessions.SignInAsync(user, "a password (new account)", SessionClaims.Password);
        return LocalRedirect(Url.OursOr(ReturnUrl, "~/account"));
    }

    private void AddErrors(IdentityResult result, string key)
    {
        foreach (var error in result.Errors)
        {
            ModelState.AddModelError(key, error.Description);
        }
    }

    public sealed class RegisterInput
    {
        [Required(ErrorMessage = "Choose a user name.")]
        [StringLength(64, MinimumLength = 2, ErrorMessage = "A user name has 2 to 64 characters.")]
        [RegularExpression(@"^[A-Za-z0-9._@+-]+$", ErrorMessage = "A user name may contain letters, digits and . _ @ + - only.")]
        public string UserName { get; set; } = string.Empty;

        [Required(ErrorMessage = "Enter your email address.")]
        [EmailAddress(ErrorMessage = "Enter a valid email address.")]
        [StringLength(256)]
        public string Email { get; set; } = string.Empty;

        [Required(ErrorMessage = "Choose a password.")]
        [StringLength(256)]
        public string Password { get; set; } = string.Empty;

        [Compare(nameof(Password), ErrorMessage = "The passwords do not match.")]
        public string ConfirmPassword { get; set; } = string.Empty;
    }
}
