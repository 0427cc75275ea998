using System.Collections.Immutable;
using System.Globalization;
using IdentityServer.Accounts;
using IdentityServer.Shared;
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
/// The authorization endpoint (pass-through). OpenIddict has validated the request (client, redirect_uri, PKCE,
/// scopes); this page decides whether the user must sign in, whether they must consent, and then signs in
/// through OpenIddict, which writes the response (query or form_post). Consent is this page's own form,
/// posted back here with the request's parameters.
/// </summary>
[AllowAnonymous]
[IgnoreAntiforgeryToken] // Clients may POST authorization requests; the consent form is checked by hand below.
public sealed class AuthorizeModel(
    IOpenIddictApplicationManager applications,
    IOpenIddictAuthorizationManager authorizations,
    IOpenIddictScopeManager scopeManager,
    UserManager<ApplicationUser> users,
    UserPrincipalFactory principals,
    IAntiforgery antiforgery,
    TimeProvider clock,
    ILogger<AuthorizeModel> logger) : PageModel
{
    /// <summary>Added to the return URL of a forced sign-in: the sign-in must be newer than this (prompt=login).</summary>
    public const string LoginAfterParameter = "x_login_after";

    private const string DecisionField = "consent_decision";

    public ProtocolError? Error { get; private set; }

    public string ClientName { get; private set; } = string.Empty;

    public IReadOnlyList<(string Name, string Description)> Scopes { get; private set; } = [];

    /// <summary>The request's own parameters, re-posted by the consent form.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Parameters { get; private set; } = [];

    public string DecisionFieldName => DecisionField;

    public Task<IActionResult> OnGetAsync() => HandleAsync();

    public async Task<IActionResult> OnPostAsync()
    {
        if (Request.HasFormContentType && Request.Form.TryGetValue(DecisionField, out var decision))
        {
            if (!await antiforgery.IsRequestValidAsync(HttpContext))
            {
                return ShowError(Errors.InvalidRequest, "The consent form expired. Go back to the application and try again.");
            }

            return await HandleAsync(decision.ToString());
        }

        return await HandleAsync();
    }

    private async Task<IActionResult> HandleAsync(string? consentDecision = null)
    {
        if (HttpContext.GetOpenIddictServerResponse() is { Error: { } error } response)
        {
            return ShowError(error, response.ErrorDescription);
        }

        var request = HttpContext.GetOpenIddictServerRequest();
        if (request is null)
        {
            return ShowError(Errors.InvalidRequest, "This is not an authorization request.");
        }

        var session = await HttpContext.AuthenticateAsync(IdentityConstants.ApplicationScheme);
        var user = session.Succeeded ? await users.GetUserAsync(session.Principal) : null;
        if (user is null || NeedsFreshSignIn(request, session.Principal!))
        {
            if (request.HasPromptValue(PromptValues.None))
            {
                return Refuse(Errors.LoginRequired, "The user is not signed in.");
            }

            return Challenge(new AuthenticationProperties { RedirectUri = ReturnUrlForSignIn() }, IdentityConstants.ApplicationScheme);
        }

        var application = await applications.FindByClientIdAsync(request.ClientId!, HttpContext.RequestAborted);
        if (application is null)
        {
            return ShowError(Errors.InvalidClient, "The application is not registered.");
        }

        var applicationId = await applications.GetIdAsync(application, HttpContext.RequestAborted);
        var requestedScopes = request.GetScopes();
        var existing = await authorizations.FindAsync(
            subject: user.Id, client: applicationId, status: Statuses.Valid, type: AuthorizationTypes.Permanent,
            scopes: requestedScopes, HttpContext.RequestAborted).ToListAsync(HttpContext.RequestAborted);
        var consentType = await applications.GetConsentTypeAsync(application, HttpContext.RequestAborted);

        if (consentDecision is not null)
        {
            if (consentDecision != "accept")
            {
                logger.LogInformation(TokenEvents.AuthorizationDenied, "User {UserId} denied {ClientId}", user.Id, request.ClientId);
                return Refuse(Errors.AccessDenied, "The user denied the request.");
            }

            if (consentType == ConsentTypes.External && existing.Count == 0)
            {
                return Refuse(Errors.ConsentRequired, "An administrator must grant this application access.");
            }

            return await GrantAsync(user, session.Principal!, applicationId, requestedScopes, existing.LastOrDefault());
        }

        switch (consentType)
        {
            case ConsentTypes.External when existing.Count == 0:
                return Refuse(Errors.ConsentRequired, "An administrator must grant this application access.");

            case ConsentTypes.Implicit:
            case ConsentTypes.External:
            case ConsentTypes.Explicit when existing.Count > 0 && !request.HasPromptValue(PromptValues.Consent):
                return await GrantAsync(user, session.Principal!, applicationId, requestedScopes, existing.LastOrDefault());

            case ConsentTypes.Explicit or ConsentTypes.Systematic when request.HasPromptValue(PromptValues.None):
                return Refuse(Errors.ConsentRequired, "The user must consent to this application first.");

            default:
                await ShowConsentAsync(application, requestedScopes);
                return Page();
        }
    }

    /// <summary>
    /// A sign-in is needed again when the client asks for one (<c>prompt=login</c>) or the session is older than
    /// <c>max_age</c>. After the forced sign-in the request carries <see cref="LoginAfterParameter"/>, so a sign-in
    /// newer than that satisfies <c>prompt=login</c> and the user is not sent round in circles.
    /// </summary>
    private bool NeedsFreshSignIn(OpenIddictRequest request, System.Security.Claims.ClaimsPrincipal session)
    {
        var authTime = SessionClaims.GetAuthenticationTime(session);
        if (authTime is null)
        {
            return true;
        }

        if (request.MaxAge is { } maxAge && clock.GetUtcNow() - authTime.Value > TimeSpan.FromSeconds(maxAge))
        {
            return true;
        }

        if (request.HasPromptValue(PromptValues.Login))
        {
            var marker = RequestParameters().FirstOrDefault(p => p.Key == LoginAfterParameter).Value;
            var loginAfter = long.TryParse(marker, CultureInfo.InvariantCulture, out var seconds)
                ? DateTimeOffset.FromUnixTimeSeconds(seconds)
                : DateTimeOffset.MaxValue;
            return authTime.Value < loginAfter;
        }

        return false;
    }

    /// <summary>Where the login page sends the user back to: this request again (as a GET), marked with the time of the forced sign-in.</summary>
    private string ReturnUrlForSignIn()
    {
        var parameters = RequestParameters().Where(p => p.Key is not LoginAfterParameter and not DecisionField and not "__RequestVerificationToken")
            .SelectMany(p => p.Value.Select(v => KeyValuePair.Create(p.Key, v)))
            .Append(KeyValuePair.Create(LoginAfterParameter, (string?)clock.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)));
        return Request.PathBase + Request.Path + QueryString.Create(parameters);
    }

    private async Task<IActionResult> GrantAsync(ApplicationUser user, System.Security.Claims.ClaimsPrincipal session,
        string? applicationId, ImmutableArray<string> scopes, object? authorization)
    {
        var principal = await principals.CreateAsync(user, scopes, session, HttpContext.RequestAborted);

        // A permanent authorization remembers the consent and ties every token of this grant together,
        // so that revoking it (or a replayed code) takes them all.
        authorization ??= await authorizations.CreateAsync(principal, user.Id, applicationId!, AuthorizationTypes.Permanent,
            principal.GetScopes(), HttpContext.RequestAborted);
        principal.SetAuthorizationId(await authorizations.GetIdAsync(authorization, HttpContext.RequestAborted));

        logger.LogInformation(TokenEvents.AuthorizationGranted, "User {UserId} authorized {ApplicationId} for {Scopes}", user.Id, applicationId, scopes);
        return SignIn(principal, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    private async Task ShowConsentAsync(object application, ImmutableArray<string> requestedScopes)
    {
        ClientName = await applications.GetLocalizedDisplayNameAsync(application, HttpContext.RequestAborted)
            ?? await applications.GetClientIdAsync(application, HttpContext.RequestAborted) ?? "This application";
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

    private ForbidResult Refuse(string error, string description) => Forbid(
        new AuthenticationProperties(new Dictionary<string, string?>
        {
            [OpenIddictServerAspNetCoreConstants.Properties.Error] = error,
            [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = description,
        }),
        OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);

    private PageResult ShowError(string error, string? description)
    {
        Error = new ProtocolError(error, description, HttpContext.TraceIdentifier);
        Response.StatusCode = StatusCodes.Status400BadRequest;
        return Page();
    }
}
