using System.Security.Claims;
using IdentityServer.Accounts;
using IdentityServer.Accounts.External;
using IdentityServer.Logout;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Primitives;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization.Pages;

/// <summary>
/// RP-initiated logout (pass-through). With a valid <c>id_token_hint</c> for the signed-in user the session ends at
/// once and OpenIddict redirects to the client's registered <c>post_logout_redirect_uri</c> (with <c>state</c>).
/// Without one (missing, tampered, unsigned, or another user's) the user is asked first, so a forged link cannot sign
/// anyone out silently. A self-registered client's post_logout_redirect_uri is only followed after the person was asked
/// and shown where it leads: anyone may register one, and get an id token for it with an account of their own, so a
/// silent redirect there would make this server an open redirector.
/// </summary>
[AllowAnonymous]
[IgnoreAntiforgeryToken] // Clients may POST logout requests; the confirmation form is checked by hand.
public sealed class EndSessionModel(SignInManager<ApplicationUser> signInManager, AccountSessions sessions, FrontChannelLogout frontChannel,
    ProviderSignOut providerSignOut, IAntiforgery antiforgery, IOpenIddictApplicationManager applications, ILogger<EndSessionModel> logger) : PageModel
{
    private const string ConfirmField = "confirm_sign_out";

    /// <summary>Whether the request itself was refused (then the confirmation signs out here, with no redirect).</summary>
    public bool RequestRefused { get; private set; }

    /// <summary>Why the request was refused, shown so the person (or a developer) can tell.</summary>
    public string? Refusal { get; private set; }

    public IReadOnlyList<KeyValuePair<string, string>> Parameters { get; private set; } = [];

    public string ConfirmFieldName => ConfirmField;

    /// <summary>Where a self-registered client's post_logout_redirect_uri leads (its host), shown before going there.</summary>
    public string? SelfRegisteredReturnsTo { get; private set; }

    public async Task<IActionResult> OnGetAsync()
    {
        var selfRegisteredDestination = await SelfRegisteredDestinationAsync();
        if (selfRegisteredDestination is null && await HintNamesThisSessionsUserAsync())
        {
            return await SignOutAsync();
        }

        return AskForConfirmation(selfRegisteredDestination);
    }

    public async Task<IActionResult> OnPostAsync()
    {
        if (Request.HasFormContentType && Request.Form.ContainsKey(ConfirmField))
        {
            return await antiforgery.IsRequestValidAsync(HttpContext) ? await SignOutAsync() : AskForConfirmation(await SelfRegisteredDestinationAsync());
        }

        return await OnGetAsync();
    }

    /// <summary>
    /// The destination of the request's post_logout_redirect_uri when the client it is for (by client_id, else the
    /// hint's audience) registered itself; null otherwise, or when the request was refused (then nothing is followed).
    /// </summary>
    private async Task<string?> SelfRegisteredDestinationAsync()
    {
        var request = HttpContext.GetOpenIddictServerRequest();
        if (HttpContext.GetOpenIddictServerResponse()?.Error is not null
            || !Uri.TryCreate(request?.PostLogoutRedirectUri, UriKind.Absolute, out var destination))
        {
            return null;
        }

        IEnumerable<string> clientIds = request!.ClientId is { Length: > 0 } clientId ? [clientId] : (await ValidIdTokenHintAsync())?.GetAudiences() ?? [];
        foreach (var id in clientIds)
        {
            if ((await Clients.StoredClientProperties.OfClientAsync(applications, id, HttpContext.RequestAborted))?.SelfRegistered == true)
            {
                return Shared.AbsoluteUris.DestinationOf(destination);
            }
        }

        return null;
    }

    private async Task<bool> HasValidIdTokenHintAsync() => await ValidIdTokenHintAsync() is not null;

    /// <summary>
    /// A valid hint whose subject is the user signed in here (or no one is): anyone can get a valid id token for their
    /// own account, so a hint for someone else must not sign this user out unasked.
    /// </summary>
    private async Task<bool> HintNamesThisSessionsUserAsync()
    {
        if (await ValidIdTokenHintAsync() is not { } hint)
        {
            return false;
        }

        var session = await HttpContext.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        return session.Principal is not { } user
            || string.Equals(signInManager.UserManager.GetUserId(user), hint.GetClaim(Claims.Subject), StringComparison.Ordinal);
    }

    private async Task<ClaimsPrincipal?> ValidIdTokenHintAsync()
    {
        if (HttpContext.GetOpenIddictServerResponse()?.Error is not null || HttpContext.GetOpenIddictServerRequest() is null)
        {
            return null;
        }

        // OpenIddict has validated the hint's signature and issuer. When the hint is missing or invalid it still
        // "succeeds", with an empty, unauthenticated principal (never null), so test the identity, not the principal.
        var hint = await HttpContext.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        return hint.Principal?.Identity?.IsAuthenticated == true ? hint.Principal : null;
    }

    /// <remarks>
    /// The session's front-channel frames are read before it ends (its clients' rows may go with it), and loaded by the
    /// page the redirect turns into (<see cref="FrontChannelLogoutResult"/>).
    /// </remarks>
    private async Task<IActionResult> SignOutAsync()
    {
        var session = (await HttpContext.AuthenticateAsync(IdentityConstants.ApplicationScheme)).Principal;
        if (User.Identity?.IsAuthenticated == true || session is not null)
        {
            logger.LogInformation(AccountEvents.SignedOut, "Session ended through the end session endpoint");
        }

        var frames = await frontChannel.FramesAsync(session, CancellationToken.None); // never cancelled: the session must end
        var atProvider = providerSignOut.Take(HttpContext, session is null ? null : signInManager.UserManager.GetUserId(session));
        await sessions.SignOutAsync();
        var request = HttpContext.GetOpenIddictServerRequest();
        if (HttpContext.GetOpenIddictServerResponse()?.Error is not null || request is null
            || (string.IsNullOrEmpty(request.ClientId) && !await HasValidIdTokenHintAsync()))
        {
            // No client named (by a valid hint or client_id), or the request was refused: redirect nowhere.
            return new FrontChannelLogoutResult(ProviderSignOut.Then(atProvider, Redirect("~" + SignedOutModel.Path)), frames);
        }

        // OpenIddict redirects to the validated post_logout_redirect_uri, or to our signed-out page when there is none.
        return new FrontChannelLogoutResult(ProviderSignOut.Then(atProvider,
            SignOut(new AuthenticationProperties { RedirectUri = Url.Content("~" + SignedOutModel.Path) }, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme)), frames);
    }

    /// <param name="selfRegisteredDestination">Where a self-registered client's post_logout_redirect_uri leads (<see cref="SelfRegisteredDestinationAsync"/>).</param>
    private PageResult AskForConfirmation(string? selfRegisteredDestination)
    {
        SelfRegisteredReturnsTo = selfRegisteredDestination;
        var response = HttpContext.GetOpenIddictServerResponse();
        RequestRefused = response?.Error is not null;
        // The error code only: a description can carry words of the request's own (a repeated parameter's name), which
        // a crafted link would then have this page show. The log has the description.
        Refusal = RequestRefused ? response!.Error : null;
        IEnumerable<KeyValuePair<string, StringValues>> source = Request.HasFormContentType ? Request.Form : Request.Query;
        Parameters = RequestRefused
            ? []
            : source.Where(p => p.Key is not ConfirmField and not "__RequestVerificationToken")
                .SelectMany(p => p.Value.Select(v => KeyValuePair.Create(p.Key, v ?? string.Empty))).ToList();
        return Page();
    }
}
