using System.Security.Claims;
using IdentityServer.Accounts;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Admin;

/// <summary>
/// Who may administer: a bearer access token of this server with the admin scope (a machine client's; a person's
/// only while that person is still an active admin), or the session cookie of a person in the admin role. Both
/// are checked against the database on every request, so taking the role away takes effect at once.
/// </summary>
public sealed class AdminRequirement(bool allowBearer) : IAuthorizationRequirement
{
    public bool AllowBearer { get; } = allowBearer;
}

public sealed class AdminRequirementHandler(
    IServiceProvider services,
    IHttpContextAccessor http,
    ILogger<AdminRequirementHandler> logger) : AuthorizationHandler<AdminRequirement>
{
    /// <summary>
    /// Resolved on first use. The fallback policy makes ASP.NET Core build every authorization handler on every
    /// request, token requests included, and a user manager is costly to build (about 1% of a token request's CPU).
    /// </summary>
    private UserManager<ApplicationUser> Users => services.GetRequiredService<UserManager<ApplicationUser>>();

    protected override async Task HandleRequirementAsync(AuthorizationHandlerContext context, AdminRequirement requirement)
    {
        var principal = context.User;
        if (principal.Identity?.IsAuthenticated != true)
        {
            return;
        }

        var bearer = requirement.AllowBearer && http.HttpContext is { } request && AdminAccess.CarriesAccessToken(request);
        string? refusal;
        if (bearer)
        {
            refusal = await CheckTokenAsync(principal);
        }
        else
        {
            var user = await Users.GetUserAsync(principal);
            refusal = user is null ? "unknown user" : await CheckPersonAsync(user);
        }

        if (refusal is null)
        {
            context.Succeed(requirement);
            return;
        }

        logger.LogWarning(AdminEvents.AccessRefused, "Admin access refused for {Subject} ({Credential}): {Reason}",
            principal.GetClaim(Claims.Subject) ?? principal.FindFirstValue(ClaimTypes.NameIdentifier) ?? "(none)",
            bearer ? "bearer token" : "session cookie", refusal);
    }

    private async Task<string?> CheckTokenAsync(ClaimsPrincipal token)
    {
        if (!token.HasScope(AdminApi.Scope) || !token.HasAudience(AdminApi.Audience))
        {
            return $"the access token has no '{AdminApi.Scope}' scope for audience {AdminApi.Audience}";
        }

        var subject = token.GetClaim(Claims.Subject);
        if (string.IsNullOrEmpty(subject))
        {
            return "the access token has no subject";
        }

        // The client the token was issued to must still be allowed the admin scope: taking the scope away from a
        // client ends its admin access at once, not when its tokens expire.
        var client = token.GetPresenters().FirstOrDefault();
        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        if (client is null || await applications.FindByClientIdAsync(client) is not { } application
            || !await applications.HasPermissionAsync(application, Permissions.Prefixes.Scope + AdminApi.Scope))
        {
            return $"the client {client ?? "(none)"} is no longer allowed the '{AdminApi.Scope}' scope";
        }

        // A machine client's own token (client credentials): the client is its subject.
        if (client == subject)
        {
            return null;
        }

        // A person's token through a client allowed the admin scope: only while that person is an admin.
        var user = await Users.FindByIdAsync(subject);
        return user is null ? "the token's user no longer exists" : await CheckPersonAsync(user);
    }

    private async Task<string?> CheckPersonAsync(ApplicationUser user)
    {
        if (await Users.IsLockedOutAsync(user))
        {
            return "the user is locked out";
        }

        return await Users.IsInRoleAsync(user, AdminApi.Role) ? null : $"the user is not in the '{AdminApi.Role}' role";
    }
}

public static class AdminAccess
{
    public static bool IsBearerRequest(HttpContext context) =>
        context.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);

    /// <summary>An access token in the Authorization header, as a bearer token or a DPoP-bound one (RFC 9449 section 7.1).</summary>
    public static bool CarriesAccessToken(HttpContext context) =>
        IsBearerRequest(context) || Dpop.DpopServerHandlers.DpopTokenOf(context.Request) is not null;

    /// <summary>The actor of the current request, for the audit log.</summary>
    public static AdminActor ActorOf(HttpContext context)
    {
        var principal = context.User;
        if (CarriesAccessToken(context))
        {
            var subject = principal.GetClaim(Claims.Subject) ?? "(unknown)";
            var client = principal.GetPresenters().FirstOrDefault();
            return client == subject
                ? new AdminActor(AdminActor.ClientType, subject, principal.GetClaim(Claims.Name), null, context.TraceIdentifier)
                : new AdminActor(AdminActor.UserType, subject, principal.GetClaim(Claims.PreferredUsername) ?? principal.GetClaim(Claims.Name),
                    client, context.TraceIdentifier);
        }

        return new AdminActor(AdminActor.UserType, principal.FindFirstValue(ClaimTypes.NameIdentifier) ?? "(unknown)",
            principal.Identity?.Name, null, context.TraceIdentifier);
    }

    /// <summary>
    /// A change made with the session cookie must carry the antiforgery token (header <c>RequestVerificationToken</c>),
    /// so that no other site can make an admin's browser change anything. Bearer tokens are not sent by browsers on
    /// their own, so they need none.
    /// </summary>
    public static async ValueTask<object?> RequireAntiforgeryForCookies(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (!HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method) && !CarriesAccessToken(http)
            && !await http.RequestServices.GetRequiredService<IAntiforgery>().IsRequestValidAsync(http))
        {
            return AdminResults.Error(StatusCodes.Status400BadRequest, FieldError.InvalidRequest,
                "A change made with the session cookie needs the antiforgery token in the RequestVerificationToken header; scripts use a bearer token instead.");
        }

        return await next(context);
    }
}
