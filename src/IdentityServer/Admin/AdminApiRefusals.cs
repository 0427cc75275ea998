using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;

namespace IdentityServer.Admin;

/// <summary>
/// The admin API's 401 and 403 carry the API's JSON error body as well as the bearer challenge: the schemes answer
/// with a status and a <c>WWW-Authenticate</c> header only, and a script reading the body would find nothing to show.
/// Everything else is ASP.NET Core's default handling.
/// </summary>
public sealed class AdminApiRefusals : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        await _default.HandleAsync(next, context, policy, authorizeResult);
        if ((authorizeResult.Challenged || authorizeResult.Forbidden) && !context.Response.HasStarted
            && context.Request.Path.StartsWithSegments(AdminApi.RoutePrefix, StringComparison.OrdinalIgnoreCase)
            && context.Response.StatusCode is StatusCodes.Status401Unauthorized or StatusCodes.Status403Forbidden)
        {
            var error = context.Response.StatusCode switch
            {
                StatusCodes.Status403Forbidden => AdminResults.Error(StatusCodes.Status403Forbidden, "insufficient_access",
                    "The admin API needs an access token with the admin scope, or the session of a user in the admin role."),
                _ when AdminAccess.IsBearerRequest(context) => AdminResults.Error(StatusCodes.Status401Unauthorized, "invalid_token",
                    "The access token is not valid: expired, revoked, or not issued by this server."),
                _ => AdminResults.Error(StatusCodes.Status401Unauthorized, "unauthorized",
                    "The admin API needs an access token of this server with the admin scope (Authorization: Bearer), or the session of a user in the admin role."),
            };
            await error.ExecuteAsync(context);
        }
    }
}
