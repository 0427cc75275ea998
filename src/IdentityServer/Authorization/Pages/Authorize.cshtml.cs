using System.Collections.Immutable;
using System.Globalization;
using System.Text.Encodings.Web;
using IdentityServer.Accounts;
using IdentityServer.Hosting;
using IdentityServer.Shared;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization.Pages;

/// <summary>
/// The authorization endpoint (pass-through). OpenIddict has validated the request (client, redirect_uri, PKCE,
/// scopes); this page decides whether the user must sign in, which account to use (<c>prompt=select_account</c>),
/// whether they must consent, and then signs in through OpenIddict, which writes the response (query or
/// form_post). The account choice and consent are this page's own forms, posted back here with the request's
/// parameters.
/// </summary>
[AllowAnonymous]
[IgnoreAntiforgeryToken] // Clients may POST authorization requests; our own forms are checked by hand below.
public sealed class AuthorizeModel(
    IOpenIddictApplicationManager applications,
    IOpenIddictAuthorizationManager authorizations,
    IOpenIddictScopeManager scopeManager,
    UserManager<ApplicationUser> users,
    UserPrincipalFactory principals,
    IAntiforgery antiforgery,
    SignInMarker signInMarker,
    LoginHints loginHints,
    TimeProvider clock,
    IOptionsMonitor<OpenIddictServerOptions> serverOptions,
    Logout.SessionClients sessionClients,
    RememberedConsents consents,
    UserSessions sessionRows,
    IOptions<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions> kestrel,
    ILogger<AuthorizeModel> logger) : PageModel
{
    private const string DecisionField = "consent_decision";

    /// <summary>The account choice (continue or another), kept by the consent form so it is not asked twice.</summary>
    private const string AccountField = "x_account";

    public const string ContinueAsSignedIn = "continue";

    public const string UseAnotherAccount = "another";

    public ProtocolError? Error { get; private set; }

    /// <summary>Set when the page asks which account to use: the signed-in user's name.</summary>
    public string? SignedInAs { get; private set; }

    public string ClientName { get; private set; } = string.Empty;

    /// <summary>Where a client that registered itself sends the person back to (its redirect URI's host), so they see who it is; null for the others.</summary>
    public string? SelfRegisteredReturnsTo { get; private set; }

    public IReadOnlyList<(string Name, string Description)> Scopes { get; private set; } = [];

    /// <summary>The request's own parameters, re-posted by the consent form.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Parameters { get; private set; } = [];

    public string DecisionFieldName => DecisionField;

    public string AccountFieldName => AccountField;

    public Task<IActionResult> OnGetAsync() => HandleAsync();

    public async Task<IActionResult> OnPostAsync()
    {
        // Our own forms' answers count only with their antiforgery token: a client's POST (or a GET) cannot carry them.
        if (Request.HasFormContentType && (Request.Form.ContainsKey(DecisionField) || Request.Form.ContainsKey(AccountField)))
        {
            if (!await antiforgery.IsRequestValidAsync(HttpContext))
            {
                return ShowError(Errors.InvalidRequest, "The form expired. Go back to the application and try again.");
            }

            return await HandleAsync(Request.Form[DecisionField].FirstOrDefault(), Request.Form[AccountField].FirstOrDefault());
        }

        // A client's POST from another site comes without the session cookie, which is SameSite=Lax: a signed-in user was
        // sent to sign in again, and prompt=none answered login_required. Posted again from this page, same-origin, the
        // request comes with it. Not for a request OpenIddict refused: its error needs no session. Only in a window of its
        // own (Sec-Fetch-Dest document): in another site's frame the browser sends no Lax cookie even then, and the page,
        // which may not be framed, would only stop a silent prompt=none hearing its login_required.
        if (Request.Headers["Sec-Fetch-Site"] == "cross-site" && Request.Headers["Sec-Fetch-Dest"] == "document"
            && Request.HasFormContentType && HttpContext.GetOpenIddictServerResponse() is null
            && !(await HttpContext.AuthenticateAsync(IdentityConstants.ApplicationScheme)).Succeeded)
        {
            Response.Headers.CacheControl = "no-store";
            return SelfSubmittingForm(Request.PathBase + Request.Path,
                Request.Form.SelectMany(p => p.Value.Select(v => KeyValuePair.Create(p.Key, v))));
        }

        return await HandleAsync();
    }

    private async Task<IActionResult> HandleAsync(string? consentDecision = null, string? accountChoice = null)
    {
        if (HttpContext.GetOpenIddictServerResponse() is { Error: { } refused } response)
        {
            var (error, description) = AuthorizationError(refused, response.ErrorDescription);
            return await ReturnErrorToClientAsync(error, description) ?? ShowError(error, description);
        }

        var request = HttpContext.GetOpenIddictServerRequest();
        if (request is null)
        {
            return ShowError(Errors.InvalidRequest, "This is not an authorization request.");
        }

        var session = await HttpContext.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        // prompt=create: the registration page first, even for a user signed in already (the app asked for a new
        // account), then this request again; it goes on once someone signed in after being sent there (the new account,
        // or a user who chose to sign in instead, aiming for the level acr_values asks), else it goes there again.
        if (request.HasPromptValue(PromptCreate.Value) && !(session.Succeeded && await SignedInHereSinceSentToSignInAsync(session.Principal!)))
        {
            return SendToSignIn(AuthenticationLevels.Target(RequestedLevels(request)), registration: true);
        }

        var user = session.Succeeded ? await users.GetUserAsync(session.Principal) : null;
        if (user is null || NeedsFreshSignIn(request, session.Principal!))
        {
            if (request.HasPromptValue(PromptValues.None))
            {
                return Refuse(Errors.LoginRequired, "The user is not signed in.");
            }

            return SendToSignIn();
        }

        // id_token_hint names the user the client expects (OpenID Connect Core 3.1.2.1): another user signed in here
        // must not be handed that client's tokens silently. The user is asked to sign in once; still another user,
        // or a hint that is not one of our identity tokens (no sign-in can match it), and the client hears
        // login_required.
        if (!string.IsNullOrEmpty(request.IdTokenHint) && await HintedSubjectAsync() is var hinted && hinted != user.Id)
        {
            if (hinted is null || request.HasPromptValue(PromptValues.None) || SignedInSinceSentToSignIn(session.Principal!))
            {
                return Refuse(Errors.LoginRequired, "The signed-in user is not the user id_token_hint names.");
            }

            return SendToSignIn();
        }

        // acr_values asking for more than the session has (a second factor, a passkey): sign in again, more strongly.
        var requestedLevels = RequestedLevels(request);
        if (!AuthenticationLevels.Meets(requestedLevels, SessionClaims.GetMethods(session.Principal!)))
        {
            if (SignedInSinceSentToSignIn(session.Principal!))
            {
                return Refuse(UnmetAuthenticationRequirements, "The user did not sign in as strongly as the application asks (acr_values).");
            }

            if (request.HasPromptValue(PromptValues.None))
            {
                return Refuse(Errors.InteractionRequired, "The application asks for a stronger sign-in than the user's session.");
            }

            return SendToSignIn(AuthenticationLevels.Target(requestedLevels));
        }

        var application = await applications.FindByClientIdAsync(request.ClientId!, HttpContext.RequestAborted);
        if (application is null)
        {
            return ShowError(Errors.InvalidClient, "The application is not registered.");
        }

        // prompt=select_account (OpenID Connect Core 3.1.2.1): the user picks the signed-in account or signs in with
        // another. Asked once: not after this request sent them to the login page, where they picked one already.
        if (request.HasPromptValue(PromptValues.SelectAccount) && accountChoice != ContinueAsSignedIn && !SignedInSinceSentToSignIn(session.Principal!))
        {
            if (accountChoice == UseAnotherAccount)
            {
                return SendToSignIn();
            }

            await ShowAccountChoiceAsync(application, user);
            return Page();
        }

        var applicationId = await applications.GetIdAsync(application, HttpContext.RequestAborted);
        var requestedScopes = request.GetScopes();
        var consent = await ClientConsent.FindAsync(applications, authorizations, application, user.Id, requestedScopes, HttpContext.RequestAborted);

        if (consentDecision is not null)
        {
            if (consentDecision != "accept")
            {
                // The person saw the consent page: even a client that registered itself may hear the refusal.
                HttpContext.Items[Registration.SelfRegisteredClientErrors.AnsweredConsentItem] = true;
                logger.LogInformation(TokenEvents.AuthorizationDenied, "User {UserId} denied {ClientId}", user.Id, request.ClientId);
                return Refuse(Errors.AccessDenied, "The user denied the request.");
            }

            if (consent.NeedsAdministratorGrant)
            {
                return Refuse(Errors.ConsentRequired, ClientConsent.AdministratorGrantMissing);
            }

            return await GrantAsync(user, session.Principal!, applicationId, requestedScopes, consent.Remembered.LastOrDefault());
        }

        if (consent.NeedsAdministratorGrant)
        {
            return Refuse(Errors.ConsentRequired, ClientConsent.AdministratorGrantMissing);
        }

        // prompt=consent asks, whatever the consent type (OpenID Connect Core 3.1.2.1). For an external client the user
        // confirms or declines what an administrator granted: they cannot grant more, but may always say no.
        var ask = request.HasPromptValue(PromptValues.Consent) || consent.ConsentType switch
        {
            ConsentTypes.Implicit or ConsentTypes.External => false,
            ConsentTypes.Explicit => consent.Remembered.Count == 0,
            _ => true, // systematic: every time
        };
        if (!ask)
        {
            return await GrantAsync(user, session.Principal!, applicationId, requestedScopes, consent.Remembered.LastOrDefault());
        }

        if (request.HasPromptValue(PromptValues.None))
        {
            return Refuse(Errors.ConsentRequired, "The user must consent to this application first.");
        }

        await ShowConsentAsync(application, requestedScopes);
        return Page();
    }

    /// <summary>Whether the user signed in after this very request sent them to the login page.</summary>
    private bool SignedInSinceSentToSignIn(System.Security.Claims.ClaimsPrincipal session) =>
        signInMarker.Read(RequestParameters()) is { } sentToSignInAt && SessionClaims.GetAuthenticationTime(session) >= sentToSignInAt;

    /// <summary>
    /// Whether the user signed in here after this very request sent them to sign up (prompt=create): by the session's own
    /// record of its last sign-in, as <c>auth_time</c> is when another provider says they signed in there, which may be
    /// before the request (the provider answered from its session; the account is new here all the same).
    /// </summary>
    private async Task<bool> SignedInHereSinceSentToSignInAsync(System.Security.Claims.ClaimsPrincipal session)
    {
        if (signInMarker.Read(RequestParameters()) is not { } sentToSignInAt)
        {
            return false;
        }

        if (SessionClaims.GetAuthenticationTime(session) >= sentToSignInAt)
        {
            return true;
        }

        return users.GetUserId(session) is { } userId && SessionClaims.GetSessionId(session) is { } sessionId
            && await sessionRows.FindAsync(userId, sessionId, HttpContext.RequestAborted) is { } row
            && new DateTimeOffset(row.SignedInAt, TimeSpan.Zero) >= sentToSignInAt;
    }

    /// <summary>
    /// The subject of the request's id_token_hint, once OpenIddict validated it (signature, issuer; not its lifetime);
    /// null for a hint it could not validate, which yields an unauthenticated principal.
    /// </summary>
    private async Task<string?> HintedSubjectAsync()
    {
        var hint = await HttpContext.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        return hint.Principal?.Identity?.IsAuthenticated == true ? hint.Principal.GetClaim(Claims.Subject) : null;
    }

    /// <summary>
    /// A sign-in is needed again when the client asks for one (<c>prompt=login</c>) or the session is older than
    /// <c>max_age</c>. After the forced sign-in the request carries a <see cref="SignInMarker"/>, so a sign-in
    /// newer than that satisfies both and the user is not sent round in circles (with <c>max_age=0</c>, or a user
    /// slower than <c>max_age</c> at the login page, the session is always "too old" by the time it comes back).
    /// </summary>
    private bool NeedsFreshSignIn(OpenIddictRequest request, System.Security.Claims.ClaimsPrincipal session)
    {
        var authTime = SessionClaims.GetAuthenticationTime(session);
        if (authTime is null)
        {
            return true;
        }

        if (signInMarker.Read(RequestParameters()) is { } sentToSignInAt && authTime.Value >= sentToSignInAt)
        {
            // The user signed in after this very request sent them to the login page.
            return false;
        }

        // Compared in seconds: a max_age beyond what a TimeSpan holds (any client may send one) is simply never reached.
        if (request.MaxAge is { } maxAge && (clock.GetUtcNow() - authTime.Value).TotalSeconds > maxAge)
        {
            return true;
        }

        return request.HasPromptValue(PromptValues.Login);
    }

    /// <summary>
    /// To the login page (or the registration page), which sends the user back to this request (<see cref="ReturnUrlForSignIn"/>).
    /// The request travels there and back in the page's URL, escaped once more: one too large for that URL (a POST
    /// with a long <c>claims</c>, say) would reach the browser as a URL this server refuses, a bare 414. It goes back to
    /// the client as <c>invalid_request</c> instead, naming pushed authorization requests, which carry any request by
    /// reference (OpenIddict's own caching of requests by reference is all or nothing: every request would then pay
    /// a stored row and a redirect).
    /// </summary>
    private IActionResult SendToSignIn(string? level = null, bool registration = false)
    {
        var returnUrl = ReturnUrlForSignIn(level);
        var page = Request.PathBase + (registration ? "/account/register?returnUrl=" : AccountsExtensions.LoginPath + "?ReturnUrl=")
            + Uri.EscapeDataString(returnUrl);
        // "GET ", " HTTP/1.1" and the line's end, with room to spare.
        if (page.Length + 32 > kestrel.Value.Limits.MaxRequestLineSize)
        {
            return Refuse(Errors.InvalidRequest, "The authorization request is too large to be carried through the sign-in pages; " +
                "push it to the pushed authorization request endpoint (RFC 9126) and send its request_uri instead.");
        }

        return registration
            ? Redirect(page)
            : Challenge(new AuthenticationProperties { RedirectUri = returnUrl }, IdentityConstants.ApplicationScheme);
    }

    /// <summary>Where the login page sends the user back to: this request again (as a GET), marked with the time of the forced sign-in.</summary>
    private string ReturnUrlForSignIn(string? level = null)
    {
        var parameters = RequestParameters()
            .Where(p => p.Key is not SignInMarker.Parameter and not SignInHints.LevelParameter and not SignInHints.LoginHintParameter
                and not DecisionField and not AccountField and not "__RequestVerificationToken")
            .SelectMany(p => p.Value.Select(v => KeyValuePair.Create(p.Key, v)))
            .Append(KeyValuePair.Create(SignInMarker.Parameter, (string?)signInMarker.Create(RequestParameters(), clock.GetUtcNow())));
        if (level is not null)
        {
            // A hint for the login page (ask for a second factor or a passkey); the check stays here.
            parameters = parameters.Append(KeyValuePair.Create(SignInHints.LevelParameter, (string?)level));
        }

        if (loginHints.Protect(HttpContext.GetOpenIddictServerRequest()?.LoginHint) is { } loginHint)
        {
            parameters = parameters.Append(KeyValuePair.Create(SignInHints.LoginHintParameter, (string?)loginHint));
        }

        return Request.PathBase + Request.Path + QueryString.Create(parameters);
    }

    private async Task<IActionResult> GrantAsync(ApplicationUser user, System.Security.Claims.ClaimsPrincipal session,
        string? applicationId, ImmutableArray<string> scopes, object? consent)
    {
        var principal = await principals.CreateAsync(user, scopes, session, HttpContext.RequestAborted);
        var request = HttpContext.GetOpenIddictServerRequest();
        principal.SetClaim(Claims.AuthenticationContextReference,
            AuthenticationLevels.Achieved(request is null ? [] : RequestedLevels(request), SessionClaims.GetMethods(session)));
        principal.FindFirst(Claims.AuthenticationContextReference)?.SetDestinations(Destinations.IdentityToken);

        // A permanent authorization remembers the consent; no token belongs to it. The tokens of this sign-in belong to an
        // ad-hoc authorization of their own, which OpenIddict creates with the code (the principal names none): revoking
        // its refresh token (Authorization/GrantRevocation), a replayed code or a reused refresh token ends this
        // sign-in's tokens, not the user's other sessions with the client. Revoking the app's access ends them all.
        if (consent is null)
        {
            await consents.RememberAsync(principal, user.Id, applicationId!, principal.GetScopes(), HttpContext.RequestAborted);
        }

        await sessionClients.RecordAsync(HttpContext, session, principal, request?.ClientId, serverOptions.CurrentValue, HttpContext.RequestAborted);

        logger.LogInformation(TokenEvents.AuthorizationGranted, "User {UserId} authorized {ApplicationId} for {Scopes}", user.Id, applicationId, scopes);
        return SignIn(principal, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    private async Task ShowAccountChoiceAsync(object application, ApplicationUser user)
    {
        ClientName = await DisplayNameAsync(application);
        SignedInAs = user.UserName ?? user.Email ?? user.Id;
        Parameters = RequestParameters().Where(p => p.Key is not DecisionField and not AccountField and not "__RequestVerificationToken")
            .SelectMany(p => p.Value.Select(v => KeyValuePair.Create(p.Key, v ?? string.Empty))).ToList();
    }

    /// <summary>Whether the client registered itself (dynamic client registration), from the application the request found.</summary>
    private static bool IsSelfRegistered(object application) =>
        application is OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreApplication stored && Clients.StoredClientProperties.Of(stored).SelfRegistered;

    private async Task<string> DisplayNameAsync(object application) =>
        await applications.GetLocalizedDisplayNameAsync(application, HttpContext.RequestAborted)
            ?? await applications.GetClientIdAsync(application, HttpContext.RequestAborted) ?? "This application";

    private async Task ShowConsentAsync(object application, ImmutableArray<string> requestedScopes)
    {
        ClientName = await DisplayNameAsync(application);
        if (IsSelfRegistered(application)
            && Uri.TryCreate(HttpContext.GetOpenIddictServerRequest()?.RedirectUri, UriKind.Absolute, out var redirect))
        {
            SelfRegisteredReturnsTo = Shared.AbsoluteUris.DestinationOf(redirect);
        }

        var described = new List<(string, string)>();
        foreach (var scope in requestedScopes)
        {
            described.Add((scope, await DescribeScopeAsync(scope)));
        }

        Scopes = described;
        Parameters = RequestParameters().Where(p => p.Key is not DecisionField and not "__RequestVerificationToken")
            .SelectMany(p => p.Value.Select(v => KeyValuePair.Create(p.Key, v ?? string.Empty))).ToList();
    }

    private async Task<string> DescribeScopeAsync(string scope) => scope switch
    {
        OpenIddictConstants.Scopes.OpenId => "Know who you are",
        OpenIddictConstants.Scopes.Profile => "Your user name",
        OpenIddictConstants.Scopes.Email => "Your email address",
        OpenIddictConstants.Scopes.Roles => "Your roles",
        OpenIddictConstants.Scopes.OfflineAccess => "Stay connected when you are away (refresh tokens)",
        _ => await scopeManager.FindByNameAsync(scope, HttpContext.RequestAborted) is { } stored
            ? await scopeManager.GetLocalizedDisplayNameAsync(stored, HttpContext.RequestAborted) ?? scope
            : scope,
    };

    /// <summary>The request as the client sent it: the query of a GET, the form of a POST.</summary>
    private IEnumerable<KeyValuePair<string, StringValues>> RequestParameters() =>
        Request.HasFormContentType ? Request.Form : Request.Query;

    /// <summary>
    /// RFC 6749 4.1.2.1: only an unknown client or a missing, invalid or unregistered redirect_uri is shown to the
    /// person (and every error of a client that registered itself, RFC 9700 section 4.11.2); any other error (missing PKCE, unknown scope, unsupported response type...) goes back to the client.
    /// OpenIddict never redirects a request it rejected (it may have stopped before checking the redirect_uri), so
    /// we check the client and the exact redirect_uri ourselves and only then send the error back, with state and iss
    /// (RFC 9207), in the response mode the client asked for, else its response type's default: the fragment for one that
    /// asks for a token or an id_token (RFC 6749 4.2.2.1, OAuth 2.0 Multiple Response Types 5), which such a client reads
    /// its answer from. Returns null when the error must stay here.
    /// </summary>
    private async Task<IActionResult?> ReturnErrorToClientAsync(string error, string? description)
    {
        var request = HttpContext.GetOpenIddictServerRequest();
        if (request is null || error == Errors.InvalidClient || string.IsNullOrEmpty(request.ClientId)
            || !Uri.TryCreate(request.RedirectUri, UriKind.Absolute, out var redirectUri) || !string.IsNullOrEmpty(redirectUri.Fragment))
        {
            return null;
        }

        var application = await applications.FindByClientIdAsync(request.ClientId, HttpContext.RequestAborted);
        if (application is null || !await applications.ValidateRedirectUriAsync(application, request.RedirectUri!, HttpContext.RequestAborted)
            // Anyone may register a client: its errors stay here, or this server would redirect anyone anywhere.
            || IsSelfRegistered(application))
        {
            return null;
        }

        var issuer = ServerIssuer.Of(HttpContext, serverOptions.CurrentValue);
        var parameters = new List<KeyValuePair<string, string?>> { new(OpenIddictConstants.Parameters.Error, error) };
        if (!string.IsNullOrEmpty(description))
        {
            parameters.Add(new(OpenIddictConstants.Parameters.ErrorDescription, description));
        }

        if (!string.IsNullOrEmpty(request.State))
        {
            parameters.Add(new(OpenIddictConstants.Parameters.State, request.State));
        }

        if (issuer is { IsAbsoluteUri: true })
        {
            parameters.Add(new(OpenIddictConstants.Parameters.Iss, issuer.AbsoluteUri));
        }

        logger.LogInformation(TokenEvents.AuthorizationRefused, "Authorization request from {ClientId} refused: {Error} {Description}",
            request.ClientId, error, description);
        if (request.ResponseMode == ResponseModes.FormPost)
        {
            HttpContext.AllowFormPostTo(request.RedirectUri!);
            return SelfSubmittingForm(request.RedirectUri!, parameters);
        }

        var encoded = QueryString.Create(parameters).ToUriComponent().TrimStart('?');
        return Redirect(request.IsFragmentResponseMode()
            ? request.RedirectUri + "#" + encoded
            : request.RedirectUri + (string.IsNullOrEmpty(redirectUri.Query) ? "?" : "&") + encoded);
    }

    /// <summary>
    /// OpenIddict refuses a pushed request's <c>request_uri</c> it cannot use (unknown, expired, used already) with the
    /// error of its token check, <c>invalid_token</c>, which the authorization endpoint does not have (RFC 6749 4.1.2.1):
    /// it is <c>invalid_request_uri</c> (RFC 9101 6.2, OpenID Connect Core 3.1.2.6), which tells the client to push
    /// its request again. Only the request token is refused there: an id_token_hint OpenIddict cannot validate is left
    /// to this page.
    /// </summary>
    private (string Error, string? Description) AuthorizationError(string error, string? description) =>
        error == Errors.InvalidToken && !string.IsNullOrEmpty(HttpContext.GetOpenIddictServerRequest()?.RequestUri)
            ? (Errors.InvalidRequestUri, "The request_uri is not a pushed request that can still be used (unknown, expired or used already): push the request again.")
            : (error, description);

    /// <summary>
    /// A page whose form posts <paramref name="fields"/> to <paramref name="action"/> by itself: the same self-submitting
    /// script as OpenIddict's form_post page, allowed by its hash (no inline script else).
    /// </summary>
    private static ContentResult SelfSubmittingForm(string action, IEnumerable<KeyValuePair<string, string?>> fields)
    {
        var inputs = string.Concat(fields.Select(p =>
            $"<input type=\"hidden\" name=\"{HtmlEncoder.Default.Encode(p.Key)}\" value=\"{HtmlEncoder.Default.Encode(p.Value ?? string.Empty)}\" />"));

        // An explicit 200: for a refused request the response already carries OpenIddict's 400.
        return new ContentResult
        {
            StatusCode = StatusCodes.Status200OK,
            ContentType = "text/html; charset=utf-8",
            Content = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Working...</title></head><body>" +
                $"<form name=\"form\" method=\"post\" action=\"{HtmlEncoder.Default.Encode(action)}\">{inputs}" +
                "<noscript><button type=\"submit\">Continue</button></noscript></form>" +
                $"<script>{SecurityHeaders.FormPostScript}</script></body></html>",
        };
    }

    /// <summary>The error of OpenID Connect EAP ACR values for acr_values that the sign-in could not meet.</summary>
    private const string UnmetAuthenticationRequirements = "unmet_authentication_requirements";

    private static string[] RequestedLevels(OpenIddictRequest request) =>
        request.AcrValues?.Split(' ', StringSplitOptions.RemoveEmptyEntries) ?? [];

    private ForbidResult Refuse(string error, string description) =>
        Forbid(ProtocolErrors.Properties(error, description), OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);

    private PageResult ShowError(string error, string? description)
    {
        Error = new ProtocolError(error, description, HttpContext.TraceIdentifier);
        Response.StatusCode = StatusCodes.Status400BadRequest;
        return Page();
    }
}
