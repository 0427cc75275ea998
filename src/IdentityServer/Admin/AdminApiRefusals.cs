using IdentityServer.Authorization;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;

namespace IdentityServer.Admin;

/// <summary>
/// The admin API's 401 and 403 carry the API's JSON error body as well as the bearer challenge: the schemes answer
/// with a status and a <c>WWW-Authenticate</c> header only, and a script reading the body would find nothing to show.
/// So do the registration endpoint's when it needs an initial access token (the admin policy refuses before the
/// endpoint runs), in its own RFC 7591 / RFC 6750 shape. Everything else is ASP.NET Core's default handling.
/// </summary>
public sealed class AdminApiRefusals : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        await _default.HandleAsync(next, context, policy, authorizeResult);
        if (!(authorizeResult.Challenged || authorizeResult.Forbidden) || context.Response.HasStarted
            || context.Response.StatusCode is not (StatusCodes.Status401Unauthorized or StatusCodes.Status403Forbidden))
        {
            return;
        }

        if (context.Request.Path.StartsWithSegments(AdminApi.RoutePrefix, StringComparison.OrdinalIgnoreCase))
        {
            var error = context.Response.StatusCode switch
            {
                StatusCodes.Status403Forbidden => AdminResults.Error(StatusCodes.Status403Forbidden, "insufficient_access",
                    "The admin API needs an access token with the admin scope, or the session of a user in the admin role."),
                _ when DpopRefusal(context) is { } refusal => AdminResults.Error(StatusCodes.Status401Unauthorized, refusal.Error!, refusal.ErrorDescription ?? ""),
                _ when AdminAccess.CarriesAccessToken(context) => AdminResults.Error(StatusCodes.Status401Unauthorized, "invalid_token",
                    "The access token is not valid: expired, revoked, or not issued by this server."),
                _ => AdminResults.Error(StatusCodes.Status401Unauthorized, "unauthorized",
                    "The admin API needs an access token of this server with the admin scope (Authorization: Bearer, or DPoP with a proof), or the session of a user in the admin role."),
            };
            await error.ExecuteAsync(context);
        }
        else if (context.Request.Path.StartsWithSegments(ProtocolRoutes.Registration, StringComparison.OrdinalIgnoreCase))
        {
            await RegistrationRefusal(context).ExecuteAsync(context);
        }
    }

    /// <summary>
    /// A DPoP challenge (RFC 9449 section 7.1: a refused proof, or a bound token presented without its key): the error and
    /// description the challenge gives, so that the client knows whether to make a new proof or present the token otherwise.
    /// </summary>
    private static OpenIddict.Abstractions.OpenIddictResponse? DpopRefusal(HttpContext context) =>
        context.Response.Headers.WWWAuthenticate.ToString().StartsWith(Dpop.DpopServerHandlers.AuthorizationScheme + " ", StringComparison.Ordinal)
        && context.Features.Get<OpenIddict.Validation.AspNetCore.OpenIddictValidationAspNetCoreFeature>()?.Transaction?.Response is { Error.Length: > 0 } response
            ? response : null;

    /// <summary>
    /// A registration without a valid initial access token (401 invalid_token, RFC 7591 section 3) or with one that is not
    /// an admin's (403 insufficient_scope, RFC 6750 section 3.1), as the registration endpoint answers its own errors.
    /// </summary>
    private static IResult RegistrationRefusal(HttpContext context)
    {
        var (error, description) = context.Response.StatusCode == StatusCodes.Status403Forbidden
            ? ("insufficient_scope", "The initial access token must be an access token of this server with the admin scope.")
            : ("invalid_token", "Registration needs an initial access token (an admin access token of this server) in the Authorization header.");
        context.Response.Headers.WWWAuthenticate = $"Bearer error=\"{error}\"";
        return Results.Json(new Dictionary<string, string> { ["error"] = error, ["error_description"] = description }, statusCode: context.Response.StatusCode);
    }
}
