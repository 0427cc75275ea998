using System.Security.Claims;
using IdentityServer.Accounts;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization;

/// <summary>
/// The token endpoint's decisions. OpenIddict has already authenticated the client and validated the grant
/// (code, PKCE, refresh token, device code, token exchange's subject and actor tokens); here we only decide whose tokens these are.
/// </summary>
public static class TokenEndpoint
{
    public static IEndpointRouteBuilder MapTokenEndpoint(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost(ProtocolRoutes.Token, (Delegate)ExchangeAsync).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        return endpoints;
    }

    /// <remarks>
    /// Services are resolved per grant, not as handler parameters: a machine client's token must not pay for building
    /// ASP.NET Core Identity's user and sign-in managers it never uses (measured: the largest cost after the signature).
    /// </remarks>
    private static async Task<IResult> ExchangeAsync(HttpContext context)
    {
        var request = context.GetOpenIddictServerRequest()
            ?? throw new InvalidOperationException("The OpenIddict server request cannot be retrieved.");
        var services = context.RequestServices;

        if (request.IsClientCredentialsGrantType())
        {
            var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
            var application = await applications.FindByClientIdAsync(request.ClientId!, context.RequestAborted)
                ?? throw new InvalidOperationException("The authenticated client no longer exists.");
            // openid is not granted: there is no user to sign in, so no identity token (OpenIddict would issue one about the
            // client), and the token reads no user at userinfo, even where an administrator gave the client a user's id
            // (its subject is the client, RFC 9068 2.2; RFC 9700 2.6). The response's scope says what was granted.
            var principal = await services.GetRequiredService<UserPrincipalFactory>().CreateForClientAsync(request.ClientId!,
                await applications.GetDisplayNameAsync(application, context.RequestAborted), request.GetScopes().Remove(Scopes.OpenId), context.RequestAborted);
            return Results.SignIn(principal, authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        }

        if (request.IsAuthorizationCodeGrantType() || request.IsRefreshTokenGrantType() || request.IsDeviceCodeGrantType())
        {
            var principals = services.GetRequiredService<UserPrincipalFactory>();
            var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(TokenEndpoint));
            var granted = (await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme)).Principal;
            if (granted is null || await UserWhoMaySignInAsync(services, granted) is not { } user)
            {
                logger.LogWarning(TokenEvents.GrantRefused, "Token request from {ClientId} refused: the user no longer exists or may not sign in", request.ClientId);
                return Refuse(Errors.InvalidGrant, "The user of this grant can no longer sign in.");
            }

            return Results.SignIn(await principals.RefreshAsync(granted, user),
                authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        }

        if (request.IsTokenExchangeGrantType())
        {
            return await TokenExchange.ExchangeAsync(context, request);
        }

        return Refuse(Errors.UnsupportedGrantType, "This grant type is not supported.");
    }

    /// <summary>
    /// The user a grant (or a token being exchanged) stands for, while they may still sign in: the account exists, may
    /// sign in, and is not locked out. Null otherwise.
    /// </summary>
    internal static async Task<ApplicationUser?> UserWhoMaySignInAsync(IServiceProvider services, ClaimsPrincipal grant)
    {
        var users = services.GetRequiredService<UserManager<ApplicationUser>>();
        var user = grant.GetClaim(Claims.Subject) is { } subject ? await users.FindByIdAsync(subject) : null;
        return user is not null && await services.GetRequiredService<SignInManager<ApplicationUser>>().CanSignInAsync(user)
            && !await users.IsLockedOutAsync(user) ? user : null;
    }

    internal static IResult Refuse(string error, string description) =>
        Results.Forbid(ProtocolErrors.Properties(error, description), [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
}

public static class TokenEvents
{
    public static readonly EventId GrantRefused = new(5001, nameof(GrantRefused));
    public static readonly EventId AuthorizationGranted = new(5002, nameof(AuthorizationGranted));
    public static readonly EventId AuthorizationDenied = new(5003, nameof(AuthorizationDenied));
    public static readonly EventId AuthorizationRefused = new(5004, nameof(AuthorizationRefused));
    public static readonly EventId ConcurrentRedemption = new(5005, nameof(ConcurrentRedemption));
    public static readonly EventId RedemptionNotRecorded = new(5006, nameof(RedemptionNotRecorded));
    public static readonly EventId RequestRefused = new(5009, nameof(RequestRefused));
    public static readonly EventId TokenExchanged = new(5020, nameof(TokenExchanged));
    public static readonly EventId ExchangeRefused = new(5021, nameof(ExchangeRefused));
    public static readonly EventId GrantRevoked = new(5022, nameof(GrantRevoked));
    public static readonly EventId ReplayedGrantRevoked = new(5023, nameof(ReplayedGrantRevoked));
    public static readonly EventId DeviceCodeOfAnotherClient = new(5036, nameof(DeviceCodeOfAnotherClient));
}
