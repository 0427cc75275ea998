using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// Who may revoke or introspect a token: the client it was issued to, or an API it names as its audience (RFC 7009
/// 2.1, RFC 7662 4). OpenIddict checks this only for a token that names both an audience and a presenter, so an access
/// token with no audience (one for userinfo only: <c>openid</c> and profile scopes) could be revoked, or read, by any
/// authenticated client.
/// </summary>
public static class TokenParties
{
    public static OpenIddictServerBuilder RequireTokenParties(this OpenIddictServerBuilder server)
    {
        server.AddEventHandler<ValidateRevocationRequestContext>(handler => handler.UseInlineHandler(context =>
        {
            if (!IsPartyTo(context.GenericTokenPrincipal, context.ClientId))
            {
                // As OpenIddict refuses another client's token; the revocation endpoint still answers 200 (RFC 7009 2.2).
                context.Reject(Errors.InvalidToken, "The token was not issued to this client, nor is this client its audience.");
            }

            return default;
        }).SetOrder(OpenIddictServerHandlers.Revocation.ValidateAuthorizedParty.Descriptor.Order + 1));

        server.AddEventHandler<ValidateIntrospectionRequestContext>(handler => handler.UseInlineHandler(context =>
        {
            if (!IsPartyTo(context.GenericTokenPrincipal, context.ClientId))
            {
                context.Reject(Errors.InvalidToken, "The token was not issued to this client, nor is this client its audience."); // answered active: false
            }

            return default;
        }).SetOrder(OpenIddictServerHandlers.Introspection.ValidateAuthorizedParty.Descriptor.Order + 1));

        // An identity token (or any token this endpoint does not introspect) is not an active token to introspect:
        // RFC 7662 2.2 answers that with active: false, not with an error.
        server.AddEventHandler<ApplyIntrospectionResponseContext>(handler => handler.UseInlineHandler(context =>
        {
            if (context.Error == Errors.UnsupportedTokenType)
            {
                context.Response.Error = null;
                context.Response.ErrorDescription = null;
                context.Response.ErrorUri = null;
                context.Response[Claims.Active] = false;
            }

            return default;
        }).SetOrder(OpenIddictServerHandlers.Introspection.NormalizeErrorResponse.Descriptor.Order + 1));
        return server;
    }

    /// <summary>Access tokens: the client they were issued to or an audience; refresh tokens: the client only. Null client (not identified): OpenIddict's rules apply.</summary>
    internal static bool IsPartyTo(System.Security.Claims.ClaimsPrincipal? token, string? clientId) =>
        token is null || string.IsNullOrEmpty(clientId)
        || token.HasPresenter(clientId)
        || (token.HasTokenType(TokenTypeIdentifiers.AccessToken) && token.HasAudience(clientId))
        || !(token.HasTokenType(TokenTypeIdentifiers.AccessToken) || token.HasTokenType(TokenTypeIdentifiers.RefreshToken));
}
