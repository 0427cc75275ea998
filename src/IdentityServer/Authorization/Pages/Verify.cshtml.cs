using IdentityServer.Accounts;
using IdentityServer.Shared;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization.Pages;

/// <summary>
/// The device flow's end-user verification endpoint (pass-through): a signed-in user enters the code shown on
/// the device, sees which application asks for what, and approves or denies. OpenIddict validates the code. An
/// external-consent client is refused, as at the authorization endpoint, unless an administrator granted it to the user.
/// </summary>
public sealed class VerifyModel(
    IOpenIddictApplicationManager applications,
    IOpenIddictAuthorizationManager authorizations,
    UserManager<ApplicationUser> users,
    UserPrincipalFactory principals,
    Logout.SessionClients sessionClients,
    IOptionsMonitor<OpenIddictServerOptions> serverOptions,
    ILogger<VerifyModel> logger) : PageModel
{
    public const string CompletedPath = "/connect/verify/done";

    public ProtocolError? Error { get; private set; }

    [BindProperty(SupportsGet = true, Name = Parameters.UserCode)]
    public string? UserCode { get; set; }

    public string? ClientName { get; private set; }

    public IReadOnlyList<string> Scopes { get; private set; } = [];

    /// <summary>Set when the client needs an administrator's grant the user does not have: the page offers Deny only.</summary>
    public bool NeedsAdministratorGrant { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        if (string.IsNullOrEmpty(UserCode))
        {
            return Page();
        }

        var code = await AuthenticateUserCodeAsync();
        if (code is null)
        {
            return Page();
        }

        var application = await applications.FindByClientIdAsync(code.GetClaim(Claims.ClientId) ?? string.Empty, HttpContext.RequestAborted);
        ClientName = application is null ? code.GetClaim(Claims.ClientId)
            : await applications.GetLocalizedDisplayNameAsync(application, HttpContext.RequestAborted);
        Scopes = code.GetScopes();
        NeedsAdministratorGrant = application is not null && await users.GetUserAsync(User) is { } user
            && (await ClientConsent.FindAsync(applications, authorizations, application, user.Id, code.GetScopes(), HttpContext.RequestAborted)).NeedsAdministratorGrant;
        return Page();
    }

    public async Task<IActionResult> OnPostApproveAsync()
    {
        var code = await AuthenticateUserCodeAsync();
        var user = await users.GetUserAsync(User);
        if (code is null || user is null)
        {
            return Page();
        }

        // The device then hears access_denied (RFC 8628 3.5), as a denial: the user cannot grant such a client themselves.
        var clientId = code.GetClaim(Claims.ClientId);
        var application = await applications.FindByClientIdAsync(clientId ?? string.Empty, HttpContext.RequestAborted);
        if (application is null
            || (await ClientConsent.FindAsync(applications, authorizations, application, user.Id, code.GetScopes(), HttpContext.RequestAborted)).NeedsAdministratorGrant)
        {
            logger.LogWarning(TokenEvents.AuthorizationRefused, "User {UserId} could not approve a device code for {ClientId}: {Reason}",
                user.Id, clientId, application is null ? "the application is not registered." : ClientConsent.AdministratorGrantMissing);
            return Forbid(new AuthenticationProperties { RedirectUri = Url.Content("~" + CompletedPath) + "?approved=false" },
                OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        }

        var session = (await HttpContext.AuthenticateAsync(IdentityConstants.ApplicationScheme)).Principal ?? User;
        var principal = await principals.CreateAsync(user, code.GetScopes(), session, HttpContext.RequestAborted);
        await sessionClients.RecordAsync(HttpContext, session, principal, clientId, serverOptions.CurrentValue, HttpContext.RequestAborted);
        logger.LogInformation(TokenEvents.AuthorizationGranted, "User {UserId} approved device code for {ClientId}", user.Id, clientId);
        return SignIn(principal, new AuthenticationProperties { RedirectUri = Url.Content("~" + CompletedPath) + "?approved=true" },
            OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    public async Task<IActionResult> OnPostDenyAsync()
    {
        // Only a code that is still waiting can be denied: OpenIddict cannot reject one it does not know (a second
        // press of the button, a mistyped code).
        if (await AuthenticateUserCodeAsync() is null)
        {
            return Page();
        }

        logger.LogInformation(TokenEvents.AuthorizationDenied, "User {UserId} denied a device code", users.GetUserId(User));
        return Forbid(new AuthenticationProperties { RedirectUri = Url.Content("~" + CompletedPath) + "?approved=false" },
            OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    /// <summary>The user code's principal (client and scopes), or null with <see cref="Error"/> set.</summary>
    private async Task<System.Security.Claims.ClaimsPrincipal?> AuthenticateUserCodeAsync()
    {
        if (HttpContext.GetOpenIddictServerResponse() is { Error: { } error } response)
        {
            Error = new ProtocolError(error, response.ErrorDescription ?? "The code is not valid or has expired.", HttpContext.TraceIdentifier);
            return null;
        }

        var result = await HttpContext.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        if (result.Principal?.GetClaim(Claims.ClientId) is null)
        {
            Error = new ProtocolError(Errors.InvalidToken, "The code is not valid or has expired.", HttpContext.TraceIdentifier);
            return null;
        }

        return result.Principal;
    }
}
