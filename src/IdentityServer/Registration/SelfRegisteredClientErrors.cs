using IdentityServer.Clients;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Registration;

/// <summary>
/// An authorization error for a client that registered itself is shown on this server's error page, not sent to its
/// redirect URI (this handler for the errors the authorization page answers, such as login_required; a request
/// OpenIddict refused is never redirected by it, and the authorization page keeps those here too): anyone may register one (when registration is open), and an error needs no sign-in, so redirecting it
/// would make this server an open redirector to any address a registrant names (RFC 9700 section 4.11.2). Answers
/// (codes, and an error once the person has seen the consent page) still go back to the client.
/// </summary>
public sealed class SelfRegisteredClientErrors(ILogger<SelfRegisteredClientErrors> logger) : IOpenIddictServerHandler<ApplyAuthorizationResponseContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyAuthorizationResponseContext>()
        .UseSingletonHandler<SelfRegisteredClientErrors>()
        // Once OpenIddict has settled where the response goes, before the status and the redirect are written.
        .SetOrder(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<ApplyAuthorizationResponseContext>.Descriptor.Order - 1)
        .SetType(OpenIddictServerHandlerType.Custom)
        .Build();

    /// <summary>Set on the request when the person answered the consent page: the client may then hear a refusal.</summary>
    public const string AnsweredConsentItem = "IdentityServer.Registration.AnsweredConsent";

    public async ValueTask HandleAsync(ApplyAuthorizationResponseContext context)
    {
        if (string.IsNullOrEmpty(context.Error) || string.IsNullOrEmpty(context.RedirectUri)
            || context.Request?.ClientId is not { Length: > 0 } clientId
            || Microsoft.AspNetCore.OpenIddictServerAspNetCoreHelpers.GetHttpRequest(context.Transaction) is not { } http
            || http.HttpContext.Items.ContainsKey(AnsweredConsentItem))
        {
            return;
        }

        if ((await StoredClientProperties.OfClientAsync(StoredClientProperties.ApplicationsOf(context), clientId, context.CancellationToken))?.SelfRegistered == true)
        {
            logger.LogInformation(RegistrationEvents.ErrorNotRedirected, "Authorization error {Error} for self-registered client {ClientId} shown here, not sent to {RedirectUri}",
                context.Error, clientId, context.RedirectUri);
            context.RedirectUri = null;
        }
    }
}
