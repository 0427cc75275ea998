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

    private static async Task<IResult> GetAsync(HttpContext context, UserManager<ApplicationUser> users, UserPrincipalFactory principals)
    {
        var token = (await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme)).Principal;
        var user = token?.GetClaim(Claims.Subject) is { } subject ? await users.FindByIdAsync(subject) : null;
        if (token is null || user is null || !token.HasScope(Scopes.OpenId))
        {
            return Results.Challenge(
                ProtocolErrors.Properties(Errors.InvalidToken, "The access token is not valid for userinfo (unknown user or no openid scope)."),
                [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
        }

        // The user's profile: no cache may keep it.
        context.Response.Headers.CacheControl = "no-store";
        context.Response.Headers.Pragma = "no-cache";
        return Results.Ok(await principals.GetUserInfoAsync(user, token));
    }
}
