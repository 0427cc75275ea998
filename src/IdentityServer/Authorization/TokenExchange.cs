using System.Collections.Immutable;
using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Authorization;

/// <summary>
/// OAuth 2.0 Token Exchange (RFC 8693): a client trades a user's access token it holds (as the client the token was
/// issued to, or as the API it names as its audience) for a narrower access token, for itself or for another API, on
/// behalf of the same user. OpenIddict has validated the subject token (and the actor token, if any): signature,
/// lifetime, type and its entry, so a revoked token is refused. It leaves to the server who may exchange it and for
/// what; those rules are here:
/// <list type="bullet">
/// <item>only access tokens are exchanged, for an access token (no refresh or identity token is issued);</item>
/// <item>the subject token must have been issued to this client or name it as its audience, and its user must still be able to sign in;</item>
/// <item>the new token's scopes are the subject token's or fewer (never more), each one this client may use;</item>
/// <item>its audiences are the resources of those scopes that the subject token names too, or fewer if <c>audience</c>/<c>resource</c> ask for fewer;</item>
/// <item>it expires no later than the subject token, and it stays under the subject token's authorization, so revoking
/// that (the user's consent, sign out everywhere) ends the exchanged tokens too;</item>
/// <item>an actor token (delegation, RFC 8693 4.1) must be this client's own token; its subject becomes the <c>act</c>
/// claim, with the subject token's own <c>act</c> nested inside it.</item>
/// </list>
/// </summary>
public static class TokenExchange
{
    /// <summary>RFC 8693 4.1 (OpenIddict names <c>may_act</c> but not <c>act</c>).</summary>
    public const string ActorClaim = "act";

    public static OpenIddictServerBuilder AllowAccessTokenExchange(this OpenIddictServerBuilder server)
    {
        server.Services.AddSingleton<OutsideTokenExchange>();
        return server.AllowTokenExchangeFlow().Configure(options =>
        {
            // OpenIddict takes an audience or resource parameter only if it is registered in its options and the client
            // has a permission for it; this server's resources are those of its scopes (in the database), which a client
            // reaches through its scope permissions, so an exchange checks them itself (ExchangeAsync). Other grants keep
            // OpenIddict's rules: there is no audience or resource to ask for there. So does the check that the subject
            // and actor tokens are the client's (ExchangeAsync's is stricter, and knows the client's audience aliases).
            foreach (var builtIn in new[] { Exchange.ValidateAudiences.Descriptor, Exchange.ValidateResources.Descriptor,
                Exchange.ValidateAudiencePermissions.Descriptor, Exchange.ValidateResourcePermissions.Descriptor,
                Exchange.ValidateAuthorizedParty.Descriptor })
            {
                var index = options.Handlers.IndexOf(builtIn);
                options.Handlers[index] = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateTokenRequestContext>()
                    .Import(builtIn).AddFilter<OutsideTokenExchange>().Build();
            }

            // OpenIddict also takes identity and refresh tokens by default: an identity token carries no scopes to bound
            // the new token by, and a refresh token is the client's own grant, which the refresh grant already serves.
            options.SubjectTokenTypes.Clear();
            options.SubjectTokenTypes.Add(TokenTypeIdentifiers.AccessToken);
            options.ActorTokenTypes.Clear();
            options.ActorTokenTypes.Add(TokenTypeIdentifiers.AccessToken);
        })
        // RFC 8693 2.2.1: scope is required in the answer when it differs from the one asked for (or none was);
        // OpenIddict writes it for access tokens but not for a token issued by exchange.
        .AddEventHandler<ProcessSignInContext>(handler => handler.UseInlineHandler(context =>
        {
            if (context.IncludeIssuedToken && context.IssuedTokenPrincipal is { } issued
                && !issued.GetScopes().ToHashSet(StringComparer.Ordinal).SetEquals(context.Request.GetScopes()))
            {
                context.Response.Scope = string.Join(' ', issued.GetScopes());
            }

            return default;
        }).SetOrder(AttachSignInParameters.Descriptor.Order + 1))
        // RFC 8693 2.2.2: a subject or actor token that is invalid for any reason, or unacceptable by policy, is
        // invalid_request; OpenIddict's own refusals of them (signature, lifetime, type, a revoked entry, a DPoP-bound
        // token without its proof) say invalid_grant, as for the other grants.
        .AddEventHandler<ApplyTokenResponseContext>(handler => handler.UseInlineHandler(context =>
        {
            if (context.Request?.IsTokenExchangeGrantType() is true && context.Response.Error is Errors.InvalidGrant)
            {
                context.Response.Error = Errors.InvalidRequest;
            }

            return default;
        }).SetOrder(OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<ApplyTokenResponseContext>.Descriptor.Order - 2000));
    }

    /// <summary>Keeps a handler from token exchange requests.</summary>
    public sealed class OutsideTokenExchange : IOpenIddictServerHandlerFilter<BaseContext>
    {
        public ValueTask<bool> IsActiveAsync(BaseContext context) => new(context.Transaction.Request?.IsTokenExchangeGrantType() is not true);
    }

    public static async Task<IResult> ExchangeAsync(HttpContext context, OpenIddictRequest request)
    {
        var services = context.RequestServices;
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(TokenExchange));
        var clientId = request.ClientId!;
        var authenticated = await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        var subject = authenticated.Principal;
        var actor = authenticated.Properties?.GetParameter<ClaimsPrincipal>(OpenIddictServerAspNetCoreConstants.Properties.ActorTokenPrincipal);

        IResult Refuse(string error, string description)
        {
            logger.LogWarning(TokenEvents.ExchangeRefused, "Token exchange by {ClientId} refused: {Error} {Description}", clientId, error, description);
            return TokenEndpoint.Refuse(error, description);
        }

        // A public client's identity is only its client_id: anyone may claim it (RFC 8693 5 asks for client authentication).
        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        var application = await applications.FindByClientIdAsync(clientId, context.RequestAborted)
            ?? throw new InvalidOperationException("The authenticated client no longer exists.");
        if (await applications.HasClientTypeAsync(application, ClientTypes.Public, context.RequestAborted))
        {
            return Refuse(Errors.UnauthorizedClient, "Token exchange is for confidential clients only.");
        }

        if (subject is null)
        {
            return Refuse(Errors.InvalidRequest, "The subject token is not valid.");
        }

        // The rule of revocation and introspection (the subject token is an access token: its client, or its audience by
        // client_id or audience alias), in place of OpenIddict's looser check (AllowAccessTokenExchange).
        if (!await TokenParties.IsPartyToAsync(subject, clientId, applications, context.RequestAborted))
        {
            return Refuse(Errors.InvalidRequest, "The subject token was not issued to this client, nor does it name this client as its audience.");
        }

        if (actor is not null && !actor.HasPresenter(clientId))
        {
            return Refuse(Errors.InvalidRequest, "The actor token must be one issued to this client.");
        }

        if (await TokenEndpoint.UserWhoMaySignInAsync(services, subject) is not { } user)
        {
            return Refuse(Errors.InvalidRequest, "The subject token does not stand for a user who can sign in.");
        }

        var granted = subject.GetScopes();
        var requested = request.GetScopes();
        if (requested.Contains(Scopes.OfflineAccess))
        {
            return Refuse(Errors.InvalidScope, "Token exchange issues no refresh token: offline_access cannot be asked for.");
        }

        if (requested.FirstOrDefault(scope => !granted.Contains(scope)) is { } wider)
        {
            return Refuse(Errors.InvalidScope, $"The subject token does not carry the '{wider}' scope.");
        }

        // The scope parameter was checked against the client's permissions already (ScopeRefusals); the subject token's
        // scopes taken by default are filtered by them here.
        var scopes = requested.IsEmpty ? await PermittedAsync(applications, application, granted.Remove(Scopes.OfflineAccess), context.RequestAborted) : requested;
        if (scopes.IsEmpty)
        {
            return Refuse(Errors.InvalidScope, "None of the subject token's scopes is one this client may use.");
        }

        // The subject token's audiences bound the new token's: a token narrowed to one API, exchanged again by that API,
        // would otherwise reach the other APIs its scopes name.
        var ofScopes = await services.GetRequiredService<IOpenIddictScopeManager>().ListResourcesAsync(scopes, context.RequestAborted).ToListAsync(context.RequestAborted);
        var subjectAudiences = subject.GetAudiences();
        var resources = ofScopes.Where(resource => subjectAudiences.Contains(resource, StringComparer.Ordinal)).ToList();
        if (ofScopes.Count > 0 && resources.Count == 0)
        {
            return Refuse(Errors.InvalidTarget, "The subject token is for none of the audiences of the scopes this token is for.");
        }

        var targets = request.GetAudiences().Concat(request.GetResources()).Distinct(StringComparer.Ordinal).ToList();
        if (targets.FirstOrDefault(target => !resources.Contains(target, StringComparer.Ordinal)) is { } unknown)
        {
            return Refuse(Errors.InvalidTarget, $"'{unknown}' is not an audience of both the subject token and the scopes this token is for.");
        }

        var principal = await services.GetRequiredService<UserPrincipalFactory>().CreateExchangedAsync(subject, actor, user,
            scopes, targets.Count > 0 ? targets : resources);
        if (subject.GetExpirationDate() is { } subjectExpires)
        {
            // The calling client's access token lifetime (shorter than the server's, if it has one), but never past the subject token.
            var lifetime = Clients.ClientDescriptorMapper.LifetimeOf(await applications.GetSettingsAsync(application, context.RequestAborted),
                Settings.TokenLifetimes.AccessToken) ?? services.GetRequiredService<IOptions<TokenOptions>>().Value.AccessTokenLifetime;
            var remaining = subjectExpires - services.GetRequiredService<TimeProvider>().GetUtcNow();
            principal.SetAccessTokenLifetime(remaining < lifetime ? remaining : lifetime);
        }

        logger.LogInformation(TokenEvents.TokenExchanged, "Token exchanged by {ClientId} for user {UserId} (subject token of {SubjectClientId}, actor {Actor}), scopes {Scopes}",
            clientId, user.Id, subject.GetPresenters().FirstOrDefault(), actor?.GetClaim(Claims.Subject), string.Join(' ', scopes));
        return Results.SignIn(principal, authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    /// <summary>The scopes among <paramref name="scopes"/> this client may ask for (openid needs no permission).</summary>
    private static async Task<ImmutableArray<string>> PermittedAsync(IOpenIddictApplicationManager applications, object application,
        ImmutableArray<string> scopes, CancellationToken ct)
    {
        var permitted = ImmutableArray.CreateBuilder<string>();
        foreach (var scope in scopes)
        {
            if (scope == Scopes.OpenId || await applications.HasPermissionAsync(application, Permissions.Prefixes.Scope + scope, ct))
            {
                permitted.Add(scope);
            }
        }

        return permitted.ToImmutable();
    }

    /// <summary>
    /// The <c>act</c> claim of a token issued by exchange (RFC 8693 4.1): the actor, with the actors before it nested
    /// inside; null when there is no actor now and none before.
    /// </summary>
    public static JsonElement? ActClaim(ClaimsPrincipal subject, ClaimsPrincipal? actor)
    {
        var earlier = subject.GetClaim(ActorClaim) is { Length: > 0 } json ? JsonDocument.Parse(json).RootElement.Clone() : (JsonElement?)null;
        if (actor is null)
        {
            return earlier;
        }

        var act = new Dictionary<string, object?> { [Claims.Subject] = actor.GetClaim(Claims.Subject) };
        if (actor.GetClaim(Claims.ClientId) is { } actorClient && actorClient != act[Claims.Subject] as string)
        {
            act[Claims.ClientId] = actorClient;
        }

        if (earlier is { } nested)
        {
            act[ActorClaim] = nested;
        }

        return JsonSerializer.SerializeToElement(act);
    }
}
