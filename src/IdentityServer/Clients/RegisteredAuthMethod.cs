using Microsoft.AspNetCore;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Clients;

/// <summary>
/// A confidential client authenticates with the method it is registered for (its document's
/// <c>token_endpoint_auth_method</c>; RFC 7591 section 2, OpenID Connect Core 1.0 section 9), at every endpoint where
/// clients authenticate (token, introspection, revocation, device authorization, pushed authorization); any other
/// method is refused with <c>invalid_client</c>. OpenIddict itself accepts a secret from the Basic header and from the
/// form alike. Public clients (<c>none</c>) are left to OpenIddict, which refuses any credential they send.
/// </summary>
public static class RegisteredAuthMethod
{
    public static OpenIddictServerBuilder RequireRegisteredAuthMethod(this OpenIddictServerBuilder server) =>
        server.AddEventHandler(RefuseOtherMethods.Descriptor);

    /// <summary>
    /// How the request's client authenticated: an <c>Authorization: Basic</c> header is <c>client_secret_basic</c> (OpenIddict's
    /// ASP.NET Core host moves it into <c>client_id</c> and <c>client_secret</c>, and refuses it next to a <c>client_secret</c>
    /// or <c>client_assertion</c> in the form, so with that header the secret is the header's), a <c>client_assertion</c> is
    /// <c>private_key_jwt</c>, a <c>client_secret</c> in the form <c>client_secret_post</c> (OpenIddict refuses an assertion
    /// and a secret together); null for none of them.
    /// </summary>
    public static string? MethodUsed(ProcessAuthenticationContext context)
    {
        // The test OpenIddict's ExtractBasicAuthenticationCredentials makes, on the same header.
        string? authorization = context.Transaction.GetHttpRequest()?.Headers.Authorization;
        if (authorization is not null && authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return ClientAuthenticationMethods.ClientSecretBasic;
        }

        return !string.IsNullOrEmpty(context.Request.ClientAssertion) ? ClientAuthenticationMethods.PrivateKeyJwt
            : !string.IsNullOrEmpty(context.Request.ClientSecret) ? ClientAuthenticationMethods.ClientSecretPost
            : null;
    }

    /// <summary>The client's registered method, from the application as the request found it.</summary>
    public static string Of(OpenIddictEntityFrameworkCoreApplication application) =>
        ClientDescriptorMapper.AuthMethodOf(StoredClientProperties.Of(application).AuthMethod, application.ClientType,
            !string.IsNullOrEmpty(application.JsonWebKeySet));

    /// <summary>
    /// After OpenIddict found the client and checked its type (so an unknown client, and a confidential client that sent
    /// no credentials, were refused by OpenIddict), before it checks the secret or uses the assertion: a request with the
    /// wrong method is refused without paying for the secret's hash, and its assertion is never recorded as used. A
    /// client assertion's signature was checked before (OpenIddict does that first, with the keys of the client it names).
    /// </summary>
    public sealed class RefuseOtherMethods(IOpenIddictApplicationManager applications, ILogger<RefuseOtherMethods> logger)
        : IOpenIddictServerHandler<ProcessAuthenticationContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessAuthenticationContext>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireClientIdParameter>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireDegradedModeDisabled>()
            .UseScopedHandler<RefuseOtherMethods>()
            .SetOrder(OpenIddictServerHandlers.ValidateClientType.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ProcessAuthenticationContext context)
        {
            if (context.EndpointType is not (OpenIddictServerEndpointType.Token or OpenIddictServerEndpointType.Introspection
                or OpenIddictServerEndpointType.Revocation or OpenIddictServerEndpointType.DeviceAuthorization
                or OpenIddictServerEndpointType.PushedAuthorization))
            {
                return;
            }

            // Found (and cached for this request) by OpenIddict's client id check just before.
            var application = await applications.FindByClientIdAsync(context.ClientId!, context.CancellationToken) as OpenIddictEntityFrameworkCoreApplication
                ?? throw new InvalidOperationException($"The client '{context.ClientId}' was not found after OpenIddict found it.");
            if (application.ClientType == ClientTypes.Public)
            {
                return;
            }

            var registered = Of(application);
            var used = MethodUsed(context);
            if (string.Equals(used, registered, StringComparison.Ordinal))
            {
                return;
            }

            // Names the methods, never a credential.
            logger.LogWarning(ClientAuthenticationEvents.WrongAuthMethod,
                "{Endpoint} request of client {ClientId} refused: registered for {RegisteredMethod}, authenticated with {UsedMethod}",
                context.EndpointType, context.ClientId, registered, used ?? "no credentials");
            context.Reject(Errors.InvalidClient, used is null
                ? "The client did not authenticate with the method it is registered for."
                : $"The client is not registered for {used} authentication; it must use the method it is registered for.");
        }
    }
}

public static class ClientAuthenticationEvents
{
    /// <summary>A confidential client authenticated with a method other than its registered <c>token_endpoint_auth_method</c>.</summary>
    public static readonly EventId WrongAuthMethod = new(5010, nameof(WrongAuthMethod));
}
