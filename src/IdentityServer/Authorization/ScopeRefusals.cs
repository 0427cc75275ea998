using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Authorization;

/// <summary>
/// A scope the client may not ask for, or one beyond what a refresh token was granted, is <c>invalid_scope</c>
/// (RFC 6749 4.1.2.1, 5.2 and 6). OpenIddict refuses both, but as invalid_request (a scope without its permission;
/// offline_access without the refresh token grant) or invalid_grant (a refresh asking for more than its grant).
/// Each handler here makes the same decision as OpenIddict's, just before it and with its filters, and refuses with
/// invalid_scope; OpenIddict's check stays behind it and then has nothing left to refuse.
/// </summary>
public static class ScopeRefusals
{
    public static OpenIddictServerBuilder RefuseScopesAsInvalidScope(this OpenIddictServerBuilder server) => server
        .AddEventHandler(Before<ValidateAuthorizationRequestContext, UnpermittedScope<ValidateAuthorizationRequestContext>>(Authentication.ValidateScopePermissions.Descriptor))
        .AddEventHandler(Before<ValidatePushedAuthorizationRequestContext, UnpermittedScope<ValidatePushedAuthorizationRequestContext>>(Authentication.ValidatePushedScopePermissions.Descriptor))
        .AddEventHandler(Before<ValidateDeviceAuthorizationRequestContext, UnpermittedScope<ValidateDeviceAuthorizationRequestContext>>(Device.ValidateScopePermissions.Descriptor))
        .AddEventHandler(Before<ValidateTokenRequestContext, UnpermittedScope<ValidateTokenRequestContext>>(Exchange.ValidateScopePermissions.Descriptor))
        .AddEventHandler(Before<ValidateAuthorizationRequestContext, UnpermittedOfflineAccess<ValidateAuthorizationRequestContext>>(Authentication.ValidateGrantTypePermissions.Descriptor))
        .AddEventHandler(Before<ValidatePushedAuthorizationRequestContext, UnpermittedOfflineAccess<ValidatePushedAuthorizationRequestContext>>(Authentication.ValidatePushedGrantTypePermissions.Descriptor))
        .AddEventHandler(Before<ValidateDeviceAuthorizationRequestContext, UnpermittedOfflineAccess<ValidateDeviceAuthorizationRequestContext>>(Device.ValidateGrantTypePermissions.Descriptor))
        .AddEventHandler(Before<ValidateTokenRequestContext, UnpermittedOfflineAccess<ValidateTokenRequestContext>>(Exchange.ValidateGrantTypePermissions.Descriptor))
        .AddEventHandler(Before<ValidateTokenRequestContext, ScopeBeyondGrant>(Exchange.ValidateGrantedScopes.Descriptor));

    /// <summary>Runs <typeparamref name="THandler"/> just before OpenIddict's handler, under the same filters.</summary>
    private static OpenIddictServerHandlerDescriptor Before<TContext, THandler>(OpenIddictServerHandlerDescriptor openIddicts)
        where TContext : BaseContext where THandler : class, IOpenIddictServerHandler<TContext> =>
        OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .Import(openIddicts)
            .UseScopedHandler<THandler>()
            .SetOrder(openIddicts.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    private static void Refuse(BaseValidatingContext context, ILogger logger, string description)
    {
        logger.LogInformation(TokenEvents.RequestRefused, "{Endpoint} request from {ClientId} refused: {Error} {Description}",
            context.EndpointType, context.Transaction.Request?.ClientId, Errors.InvalidScope, description);
        context.Reject(Errors.InvalidScope, description);
    }

    /// <summary>
    /// A scope the client has no permission for (openid and offline_access need none: OpenIddict's rule; openid does
    /// in a client credentials grant). Unknown scopes were refused before, as invalid_scope, by OpenIddict.
    /// </summary>
    public sealed class UnpermittedScope<TContext>(IOpenIddictApplicationManager applications, ILogger<UnpermittedScope<TContext>> logger)
        : IOpenIddictServerHandler<TContext> where TContext : BaseValidatingContext
    {
        public async ValueTask HandleAsync(TContext context)
        {
            if (context.Transaction.Request is not { ClientId: { } clientId } request
                || await applications.FindByClientIdAsync(clientId, context.CancellationToken) is not { } application)
            {
                return; // OpenIddict's own handler, next, decides.
            }

            // A client credentials grant has no user to sign in: openid is for the clients registered with it only.
            var machine = request.IsClientCredentialsGrantType();
            foreach (var scope in request.GetScopes())
            {
                if (scope is not Scopes.OfflineAccess && (scope is not Scopes.OpenId || machine)
                    && !await applications.HasPermissionAsync(application, Permissions.Prefixes.Scope + scope, context.CancellationToken))
                {
                    Refuse(context, logger, $"This client is not allowed the '{scope}' scope.");
                    return;
                }
            }
        }
    }

    /// <summary>
    /// offline_access asked for by a client without the refresh token grant. Only once the client may use the flow it
    /// asks for: otherwise OpenIddict's handler, next, refuses the flow (unauthorized_client), which comes first.
    /// </summary>
    public sealed class UnpermittedOfflineAccess<TContext>(IOpenIddictApplicationManager applications, ILogger<UnpermittedOfflineAccess<TContext>> logger)
        : IOpenIddictServerHandler<TContext> where TContext : BaseValidatingContext
    {
        public async ValueTask HandleAsync(TContext context)
        {
            if (context.Transaction.Request is not { ClientId: { } clientId } request || !request.HasScope(Scopes.OfflineAccess)
                || await applications.FindByClientIdAsync(clientId, context.CancellationToken) is not { } application)
            {
                return;
            }

            var flow = context.EndpointType switch
            {
                OpenIddictServerEndpointType.Authorization or OpenIddictServerEndpointType.PushedAuthorization => GrantTypes.AuthorizationCode,
                OpenIddictServerEndpointType.DeviceAuthorization => GrantTypes.DeviceCode,
                _ => request.GrantType,
            };
            if (flow is not null
                && await applications.HasPermissionAsync(application, Permissions.Prefixes.GrantType + flow, context.CancellationToken)
                && !await applications.HasPermissionAsync(application, Permissions.GrantTypes.RefreshToken, context.CancellationToken))
            {
                Refuse(context, logger, $"This client is not allowed the '{Scopes.OfflineAccess}' scope (it has no refresh token grant).");
            }
        }
    }

    /// <summary>A refresh asking for a scope its refresh token was not granted (RFC 6749 6: it may only narrow them).</summary>
    public sealed class ScopeBeyondGrant(ILogger<ScopeBeyondGrant> logger) : IOpenIddictServerHandler<ValidateTokenRequestContext>
    {
        public ValueTask HandleAsync(ValidateTokenRequestContext context)
        {
            if (string.IsNullOrEmpty(context.Request.Scope) || !context.Request.IsRefreshTokenGrantType())
            {
                return default;
            }

            var granted = context.RefreshTokenPrincipal?.GetScopes() ?? [];
            if (context.Request.GetScopes().FirstOrDefault(scope => !granted.Contains(scope, StringComparer.Ordinal)) is { } extra)
            {
                Refuse(context, logger, $"The '{extra}' scope was not granted to this refresh token; a refresh may only ask for the same scopes or fewer.");
            }

            return default;
        }
    }
}
