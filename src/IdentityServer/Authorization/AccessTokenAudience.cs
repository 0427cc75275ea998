using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Authorization;

/// <summary>
/// A JWT access token names its audience (RFC 9068 2.2: <c>aud</c> is required). One whose scopes name no API
/// (<c>openid profile</c>: a token for userinfo only) had none; it names this server, the issuer, whose userinfo
/// endpoint is what it is for. An API never takes it: none has the issuer as its audience.
/// </summary>
public static class AccessTokenAudience
{
    public static OpenIddictServerBuilder NameTheServerWhenNoApi(this OpenIddictServerBuilder server) =>
        server.AddEventHandler<ProcessSignInContext>(handler => handler.UseInlineHandler(context =>
        {
            // After every principal is prepared (a narrowed refresh's audiences included), before the token is made.
            if (context.AccessTokenPrincipal is { } principal && principal.FindFirst(Claims.Private.Audience) is null
                && (context.Options.Issuer ?? context.BaseUri) is { } issuer)
            {
                principal.SetAudiences(issuer.AbsoluteUri);
            }

            return default;
        }).SetOrder(PrepareUserCodePrincipal.Descriptor.Order + 1));
}
