using System.Security.Claims;
using IdentityServer.Clients;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// Who may revoke or introspect a token: the client it was issued to, or an API it names as its audience (RFC 7009
/// 2.1, RFC 7662 4), by client_id or by one of the client's audience aliases. This replaces OpenIddict's own check,
/// which looks only at a token that names both an audience and a presenter: an access token with no audience (one for
/// userinfo only: <c>openid</c> and profile scopes) could be revoked, or read, by any authenticated client.
/// </summary>
public static class TokenParties
{
    public static OpenIddictServerBuilder RequireTokenParties(this OpenIddictServerBuilder server)
    {
        // In place of OpenIddict's own checks, which are looser and know nothing of audience aliases.
        server.RemoveEventHandler(OpenIddictServerHandlers.Revocation.ValidateAuthorizedParty.Descriptor);
        server.RemoveEventHandler(OpenIddictServerHandlers.Introspection.ValidateAuthorizedParty.Descriptor);
        server.Services.AddScoped<AttachClaimsForAudienceAliases>();
        server.Configure(options =>
        {
            var index = options.Handlers.IndexOf(OpenIddictServerHandlers.Introspection.AttachApplicationClaims.Descriptor);
            options.Handlers[index] = AttachClaimsForAudienceAliases.Descriptor;
        });
        // The revocation endpoint still answers 200 (RFC 7009 2.2), the introspection endpoint active: false.
        server.AddEventHandler<ValidateRevocationRequestContext>(handler => handler.UseInlineHandler(context =>
            RefuseUnlessPartyAsync(context, context.GenericTokenPrincipal, context.ClientId))
            .SetOrder(OpenIddictServerHandlers.Revocation.ValidateAuthorizedParty.Descriptor.Order + 1));
        server.AddEventHandler<ValidateIntrospectionRequestContext>(handler => handler.UseInlineHandler(context =>
            RefuseUnlessPartyAsync(context, context.GenericTokenPrincipal, context.ClientId))
            .SetOrder(OpenIddictServerHandlers.Introspection.ValidateAuthorizedParty.Descriptor.Order + 1));

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

    /// <summary>Refuses a revocation or introspection request for a token whose party the client is not (<see cref="IsPartyToAsync"/>).</summary>
    private static async ValueTask RefuseUnlessPartyAsync(BaseValidatingContext context, ClaimsPrincipal? token, string? clientId)
    {
        if (!await IsPartyToAsync(token, clientId, StoredClientProperties.ApplicationsOf(context), context.CancellationToken))
        {
            context.Reject(Errors.InvalidToken, "The token was not issued to this client, nor is this client its audience.");
        }
    }

    /// <summary>
    /// <see cref="IsPartyTo"/>, or the client stands for one of the access token's audiences under another name (its
    /// <c>audience_aliases</c>: an API whose resource is a URL). The client is looked up only when its client_id is not
    /// a party already.
    /// </summary>
    internal static async ValueTask<bool> IsPartyToAsync(ClaimsPrincipal? token, string? clientId, IOpenIddictApplicationManager applications,
        CancellationToken cancellationToken) =>
        IsPartyTo(token, clientId) || await NamesAudienceAliasAsync(token!, clientId!, applications, cancellationToken);

    /// <summary>Whether the access token names one of the client's audience aliases as its audience.</summary>
    private static async ValueTask<bool> NamesAudienceAliasAsync(ClaimsPrincipal token, string clientId, IOpenIddictApplicationManager applications,
        CancellationToken cancellationToken)
    {
        // Only a confidential client's: anyone may claim a public client's client_id (the validator refuses aliases
        // there; this holds even for a client stored without it).
        return !string.IsNullOrEmpty(clientId) && token.HasTokenType(TokenTypeIdentifiers.AccessToken)
            && await applications.FindByClientIdAsync(clientId, cancellationToken) is OpenIddictEntityFrameworkCoreApplication { ClientType: ClientTypes.Confidential } application
            && StoredClientProperties.Of(application).AudienceAliases.Any(token.HasAudience);
    }

    /// <summary>
    /// Access tokens: the client they were issued to or an audience; refresh tokens: the client only; other tokens (the
    /// endpoints refuse them before this) are not checked. No token: nothing to check. No client: never a party.
    /// </summary>
    internal static bool IsPartyTo(ClaimsPrincipal? token, string? clientId) =>
        token is null
        || (!string.IsNullOrEmpty(clientId)
            && (token.HasPresenter(clientId)
                || (token.HasTokenType(TokenTypeIdentifiers.AccessToken) && token.HasAudience(clientId))
                || !(token.HasTokenType(TokenTypeIdentifiers.AccessToken) || token.HasTokenType(TokenTypeIdentifiers.RefreshToken))));

    /// <summary>
    /// OpenIddict's introspection answer carries the token's scopes and claims only for an audience it knows by its
    /// client_id. For a client that introspects as one of its audience aliases, the stock handler is shown a copy of the
    /// token naming the client too, so both kinds of audience get the same answer. The answer's <c>aud</c> is the
    /// token's own, attached before this.
    /// </summary>
    public sealed class AttachClaimsForAudienceAliases(OpenIddictServerHandlers.Introspection.AttachApplicationClaims stock,
        IOpenIddictApplicationManager applications) : IOpenIddictServerHandler<HandleIntrospectionRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<HandleIntrospectionRequestContext>()
            .Import(OpenIddictServerHandlers.Introspection.AttachApplicationClaims.Descriptor)
            .UseScopedHandler<AttachClaimsForAudienceAliases>()
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(HandleIntrospectionRequestContext context)
        {
            var token = context.GenericTokenPrincipal;
            if (token is null || context.Request.ClientId is not { Length: > 0 } clientId || token.HasAudience(clientId)
                || !await NamesAudienceAliasAsync(token, clientId, applications, context.CancellationToken))
            {
                await stock.HandleAsync(context);
                return;
            }

            context.GenericTokenPrincipal = token.Clone(_ => true).SetAudiences([.. token.GetAudiences(), clientId]);
            try
            {
                await stock.HandleAsync(context);
            }
            finally
            {
                context.GenericTokenPrincipal = token;
            }
        }
    }
}
