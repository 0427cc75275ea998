using IdentityServer.Accounts;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization;

/// <summary>
/// Userinfo answers for any valid access token of ours that carries <c>openid</c>, whatever its audience:
/// a web app that asked for <c>openid api</c> calls it with its API token.
/// </summary>
public static class UserInfoEndpoint
{
    public static IEndpointRouteBuilder MapUserInfoEndpoint(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapMethods(ProtocolRoutes.UserInfo, [HttpMethods.Get, HttpMethods.Post], GetAsync)
            .AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        return endpoints;
    }

    /// <summary>
    /// A POST with the access token in its Authorization header and no body at all is a userinfo request too (OpenID
    /// Connect Core 5.3.1), but OpenIddict reads every POST as a form and refuses one without a content type.
    /// </summary>
    public static OpenIddictServerBuilder AcceptBodilessUserInfoPosts(this OpenIddictServerBuilder server) =>
        server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ExtractUserInfoRequestContext>(handler => handler.UseInlineHandler(context =>
        {
            if (context.Transaction.GetHttpRequest() is { } request && HttpMethods.IsPost(request.Method) && string.IsNullOrEmpty(request.ContentType)
                && (request.ContentLength == 0 || (request.ContentLength is null && !request.Headers.ContainsKey(Microsoft.Net.Http.Headers.HeaderNames.TransferEncoding))))
            {
                request.ContentType = "application/x-www-form-urlencoded";
            }

            return default;
        }).SetOrder(OpenIddictServerAspNetCoreHandlers.ExtractGetOrPostRequest<OpenIddict.Server.OpenIddictServerEvents.ExtractUserInfoRequestContext>.Descriptor.Order - 1));

    /// <summary>
    /// The access token comes one way (RFC 6750 2: a client must not use more than one): in the Authorization header, or
    /// as a form field of a POST. Not in the URI, where logs and browser history keep it (RFC 6750 2.3 says it should
    /// not be, and this server does not read it there); before OpenIddict takes the header's over the form's.
    /// </summary>
    public static OpenIddictServerBuilder RefuseUserInfoTokensSentTwiceOrInTheUri(this OpenIddictServerBuilder server) =>
        server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ExtractUserInfoRequestContext>(handler => handler.UseInlineHandler(context =>
        {
            if (context.Transaction.GetHttpRequest() is not { } request || context.Request is null)
            {
                return default;
            }

            if (request.Query.ContainsKey(Parameters.AccessToken))
            {
                context.Reject(Errors.InvalidRequest, "The access token must be sent in the Authorization header or the form body, not in the URI.");
            }
            else if (!string.IsNullOrEmpty(context.Request.AccessToken)
                && (request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || Dpop.DpopServerHandlers.DpopTokenOf(request) is not null))
            {
                context.Reject(Errors.InvalidRequest, "The access token was sent more than one way.");
            }

            return default;
        }).SetOrder(OpenIddictServerAspNetCoreHandlers.ExtractAccessToken<OpenIddict.Server.OpenIddictServerEvents.ExtractUserInfoRequestContext>.Descriptor.Order - 1));

    private static async Task<IResult> GetAsync(HttpContext context, UserManager<ApplicationUser> users, UserPrincipalFactory principals,
        Dpop.DpopNonces nonces)
    {
        var token = (await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme)).Principal;
        if (token is not null && !token.HasScope(Scopes.OpenId))
        {
            // A valid token, but not for this (a machine's, say): 403 insufficient_scope (RFC 6750 3.1).
            return Results.Forbid(ProtocolErrors.Properties(Errors.InsufficientScope, "The access token was not granted the openid scope."),
                [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
        }

        var user = token?.GetClaim(Claims.Subject) is { } subject ? await users.FindByIdAsync(subject) : null;
        if (token is null || user is null)
        {
            return Results.Challenge(ProtocolErrors.Properties(Errors.InvalidToken, "The access token is not valid for userinfo (unknown user)."),
                [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
        }

        // The user's profile: no cache may keep it.
        context.Response.Headers.CacheControl = "no-store";
        context.Response.Headers.Pragma = "no-cache";
        // This answer is written here, not by OpenIddict, whose handlers give nonces with its own answers (the refusals).
        nonces.GiveWithAnswer(context);
        return Results.Ok(await principals.GetUserInfoAsync(user, token));
    }
}
