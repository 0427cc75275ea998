using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using IdentityServer.Data;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts.External;

/// <summary>
/// What a person who came back from an external provider gets: the account connected to that provider account, or
/// a new one. An existing account is never taken over by a matching email address: its owner connects the provider
/// on My account after signing in the usual way.
/// </summary>
public sealed class ExternalSignIns(
    SignInManager<ApplicationUser> signInManager,
    AccountSessions sessions,
    ExternalProviders providers,
    IOptionsMonitor<OpenIdConnectOptions> handlers,
    IOptions<AccountsOptions> accounts,
    IHttpContextAccessor http,
    ProviderSignOut providerSignOut,
    TimeProvider clock,
    ILogger<ExternalSignIns> logger)
{
    /// <summary>
    /// The item of a sign-in that must be fresh: when it was asked for (Unix seconds). The provider is asked not to
    /// answer from its own session, and its <c>auth_time</c> must be later.
    /// </summary>
    public const string FreshSignInSince = "fresh_sign_in_since";

    /// <summary>The longest provider key Identity's table holds; a longer <c>sub</c> is recorded by its hash.</summary>
    private const int MaximumKeyLength = 128;

    /// <summary>Where Identity keeps the user a connection was started for (SignInManager's XsrfKey).</summary>
    private const string ConnectingUserItem = "XsrfId";

    private UserManager<ApplicationUser> Users => signInManager.UserManager;

    /// <summary>
    /// What to send to <paramref name="provider"/>: back to <paramref name="callback"/>, for <paramref name="connectingUserId"/>
    /// when connecting it to that account, as a <paramref name="fresh"/> sign-in when the person is signing in again.
    /// </summary>
    /// <remarks>An application's <paramref name="maxAge"/> (seconds) is passed on, when shorter than what is asked otherwise.</remarks>
    public AuthenticationProperties ChallengeProperties(ExternalProvider provider, string? callback, string? connectingUserId, bool fresh,
        long? maxAge = null)
    {
        var properties = signInManager.ConfigureExternalAuthenticationProperties(provider.Name, callback, connectingUserId);
        if (fresh)
        {
            properties.Items[FreshSignInSince] = clock.GetUtcNow().ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (maxAge is { } seconds)
        {
            properties.Items[MaxAgeItem] = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return properties;
    }

    /// <summary>The item holding an application's <c>max_age</c>, for the provider.</summary>
    public const string MaxAgeItem = "max_age";

    /// <summary>
    /// Whether the provider's discovery document can be read (cached by its handler once read): without it the handler
    /// cannot send anyone there, and would fail the request.
    /// </summary>
    /// <remarks>
    /// Until it has been read once, each read waits for the last (the handler's configuration manager reads one at a
    /// time, whoever cancels): a person waits at most <see cref="ReachabilityWait"/>, and after a failure the provider
    /// counts as unreachable for <see cref="UnreachableFor"/> without being asked, so visitors cannot pile up reads.
    /// </remarks>
    public async Task<bool> IsReachableAsync(ExternalProvider provider, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        if (providers.UnreachableUntil.TryGetValue(provider.Name, out var until) && until > now)
        {
            return false;
        }

        try
        {
            await handlers.Get(provider.Name).ConfigurationManager!.GetConfigurationAsync(cancellationToken).WaitAsync(ReachabilityWait, cancellationToken);
            providers.UnreachableUntil.TryRemove(provider.Name, out _);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            providers.UnreachableUntil[provider.Name] = now + UnreachableFor;
            logger.LogWarning(AccountEvents.ExternalSignInFailed, "{Provider} cannot be reached: {Reason}", provider.Name, e.Message);
            return false;
        }
    }

    private static readonly TimeSpan ReachabilityWait = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan UnreachableFor = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The provider account the external cookie holds (the callback's result): for the user <paramref name="userId"/>
    /// when connecting (the connection must have been started by that user), else a sign-in's (not a connection's).
    /// Null when there is none.
    /// </summary>
    public async Task<ExternalLoginInfo?> ReadAsync(string? userId = null)
    {
        var info = await signInManager.GetExternalLoginInfoAsync(userId);
        if (info is null || providers.Find(info.LoginProvider) is null
            || (userId is null && info.AuthenticationProperties?.Items.ContainsKey(ConnectingUserItem) == true))
        {
            return null;
        }

        // Recorded with the provider account: its issuer. An entry pointed at another provider since (its sub values
        // are another namespace) then signs in to none of the accounts connected before.
        if (info.Principal.FindFirst("sub")?.Issuer is not { Length: > 0 } issuer || issuer == ClaimsIdentity.DefaultIssuer)
        {
            return null;
        }

        info.ProviderKey = KeyOf(info.ProviderKey);
        info.ProviderDisplayName = issuer;
        return info;
    }

    /// <summary>Forgets the provider's answer (Identity's external cookie): it has been used.</summary>
    public Task ForgetAsync() =>
        (http.HttpContext ?? throw new InvalidOperationException("No current request.")).SignOutAsync(IdentityConstants.ExternalScheme);

    /// <summary>
    /// Signs in the account connected to <paramref name="info"/>, creating it when the provider allows, or says why not.
    /// A second factor the account has is asked as after a password (<paramref name="stepUp"/>: even on a remembered device).
    /// </summary>
    public async Task<ExternalSignInResult> SignInAsync(ExternalLoginInfo info, bool stepUp)
    {
        var provider = providers.Find(info.LoginProvider)!;
        var user = await Users.FindByLoginAsync(info.LoginProvider, info.ProviderKey);
        if (user is not null && (await Users.GetLoginsAsync(user)).FirstOrDefault(l => l.LoginProvider == info.LoginProvider
            && l.ProviderKey == info.ProviderKey)?.ProviderDisplayName != info.ProviderDisplayName)
        {
            logger.LogWarning(AccountEvents.SignInFailed, "Sign-in with {Provider} refused for {UserId}: the account was connected to another issuer than {Issuer}",
                provider.Name, user.Id, info.ProviderDisplayName);
            return ExternalSignInResult.Refused($"Your {provider.DisplayName} account cannot sign in here. Ask an administrator.");
        }

        if (user is null)
        {
            var created = await CreateAccountAsync(info, provider);
            if (created.Refusal is not null)
            {
                return ExternalSignInResult.Refused(created.Refusal);
            }

            user = created.User!;
        }

        if (await Users.IsLockedOutAsync(user) || !await signInManager.CanSignInAsync(user))
        {
            logger.LogWarning(AccountEvents.SignInFailed, "Sign-in with {Provider} refused for {UserId}: locked out or not allowed", provider.Name, user.Id);
            return ExternalSignInResult.Refused("This account cannot sign in right now.");
        }

        // Before the external cookie (which holds the provider's identity token) goes, for a sign-out there later.
        providerSignOut.Remember(signInManager.Context, user.Id, provider,
            info.AuthenticationTokens?.FirstOrDefault(t => t.Name == OpenIdConnectParameterNames.IdToken)?.Value);
        await ForgetAsync();
        if (await signInManager.IsTwoFactorEnabledAsync(user) && (stepUp || !await signInManager.IsTwoFactorClientRememberedAsync(user)))
        {
            await sessions.BeginSecondFactorAsync(user, SessionClaims.Federated);
            return ExternalSignInResult.SecondFactor;
        }

        // A fresh sign-in was checked to be later than the request (within the clocks' minute): it is now, whatever the
        // provider's clock says, so that the page or application that asked for it is satisfied and does not ask again.
        var fresh = info.AuthenticationProperties?.Items.ContainsKey(FreshSignInSince) == true;
        await sessions.SignInAsync(user, provider.DisplayName, fresh ? null : SessionClaims.GetAuthenticationTime(info.Principal), SessionClaims.Federated);
        return ExternalSignInResult.SignedIn;
    }

    private async Task<(ApplicationUser? User, string? Refusal)> CreateAccountAsync(ExternalLoginInfo info, ExternalProvider provider)
    {
        if (!(provider.CreateAccounts ?? accounts.Value.AllowRegistration))
        {
            logger.LogWarning(AccountEvents.RegistrationRefused, "Sign-in with {Provider}: no account is connected to that provider account, and it creates none",
                provider.Name);
            return (null, $"No account here is connected to that {provider.DisplayName} account. Sign in another way, then connect it on My account.");
        }

        // Only an address the provider vouches for: else anyone could claim someone's address there.
        var email = VerifiedEmail(info.Principal, provider.TrustEmail);
        if (email is null && signInManager.Options.SignIn.RequireConfirmedEmail)
        {
            logger.LogWarning(AccountEvents.RegistrationRefused, "Sign-in with {Provider}: no verified email address to create an account with", provider.Name);
            return (null, $"Your {provider.DisplayName} account has no verified email address, which an account here needs.");
        }

        if (email is not null && await Users.FindByEmailAsync(email) is not null)
        {
            logger.LogWarning(AccountEvents.RegistrationRefused, "Sign-in with {Provider}: an account with its email address exists and is not connected",
                provider.Name);
            return (null, $"An account with the email address of your {provider.DisplayName} account exists. Sign in to it another way, then connect {provider.DisplayName} on My account.");
        }

        foreach (var userName in UserNameCandidates(info.Principal, email, provider))
        {
            var user = new ApplicationUser { UserName = userName, Email = email, EmailConfirmed = email is not null };
            var result = await Users.CreateAsync(user);
            if (!result.Succeeded)
            {
                if (result.Errors.All(e => e.Code is nameof(IdentityErrorDescriber.DuplicateUserName) or nameof(IdentityErrorDescriber.InvalidUserName)))
                {
                    continue; // the next candidate
                }

                logger.LogWarning(AccountEvents.RegistrationRefused, "Sign-in with {Provider}: the account could not be created: {Errors}",
                    provider.Name, string.Join("; ", result.Errors.Select(e => e.Code)));
                return (null, "Your account could not be created. Try again later.");
            }

            if (!await TryAddLoginAsync(user, info))
            {
                // Another request connected the same provider account meanwhile: that account is the one.
                await Users.DeleteAsync(user);
                return await Users.FindByLoginAsync(info.LoginProvider, info.ProviderKey) is { } winner
                    ? (winner, null)
                    : (null, "Your account could not be created. Try again later.");
            }

            logger.LogInformation(AccountEvents.Registered, "User {UserId} registered through {Provider} as {UserName}", user.Id, provider.Name, userName);
            return (user, null);
        }

        return (null, "Your account could not be created. Try again later.");
    }

    /// <summary>Connects the provider account to <paramref name="user"/>; false when another account has it (perhaps just now).</summary>
    public async Task<bool> TryAddLoginAsync(ApplicationUser user, ExternalLoginInfo info)
    {
        try
        {
            return (await Users.AddLoginAsync(user, info)).Succeeded;
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            // Another request connected it between Identity's check and the insert: the key is unique.
            return false;
        }
    }

    /// <summary>The provider's <c>email</c> when it says <c>email_verified</c> (or is trusted for its addresses), else null.</summary>
    private static string? VerifiedEmail(ClaimsPrincipal principal, bool trusted) =>
        principal.FindFirstValue("email") is { Length: > 0 and <= 256 } email
        && (trusted || string.Equals(principal.FindFirstValue("email_verified"), "true", StringComparison.OrdinalIgnoreCase))
            ? email
            : null;

    /// <summary>The provider's user name, else the email address, else a made-up one; Identity refuses the taken and the invalid.</summary>
    private static IEnumerable<string> UserNameCandidates(ClaimsPrincipal principal, string? email, ExternalProvider provider)
    {
        if (principal.FindFirstValue("preferred_username") is { Length: > 0 and <= 64 } preferred)
        {
            yield return preferred;
        }

        if (email is not null)
        {
            yield return email;
        }

        for (var attempt = 0; attempt < 3; attempt++)
        {
            yield return $"{provider.Name}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(5))}";
        }
    }

    /// <summary>The provider's <c>sub</c> as recorded: itself, or its SHA-256 when longer than the table holds.</summary>
    private static string KeyOf(string subject) => subject.Length <= MaximumKeyLength
        ? subject
        : "sha256:" + WebEncoders.Base64UrlEncode(SHA256.HashData(Encoding.UTF8.GetBytes(subject)));
}

/// <summary>How an external sign-in ended: signed in, a second factor to ask, or refused with a message for the person.</summary>
public sealed record ExternalSignInResult(bool IsSignedIn, bool NeedsSecondFactor, string? Refusal)
{
    public static readonly ExternalSignInResult SignedIn = new(true, false, null);
    public static readonly ExternalSignInResult SecondFactor = new(false, true, null);

    public static ExternalSignInResult Refused(string message) => new(false, false, message);
}
