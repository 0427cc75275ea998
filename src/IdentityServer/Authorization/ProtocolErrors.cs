using Microsoft.AspNetCore.Authentication;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>An OAuth error for OpenIddict to write (Forbid or Challenge on its scheme), in the properties it reads.</summary>
public static class ProtocolErrors
{
    public static AuthenticationProperties Properties(string error, string description) =>
        new(new Dictionary<string, string?>
        {
            [OpenIddictServerAspNetCoreConstants.Properties.Error] = error,
            [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = description,
        });

    /// <summary>
    /// An error of ours carries no error_uri: OpenIddict gives any challenge without one the address of its own page
    /// for its default error ("the authorization was denied", "the token is not valid"), which describes another
    /// error than the login_required or insufficient_scope written here.
    /// </summary>
    public static OpenIddictServerBuilder LeaveOurErrorsWithoutErrorUri(this OpenIddictServerBuilder server) =>
        server.AddEventHandler<ProcessChallengeContext>(handler => handler.UseInlineHandler(context =>
        {
            var properties = context.Transaction.GetProperty<AuthenticationProperties>(typeof(AuthenticationProperties).FullName!);
            if (properties?.Items.ContainsKey(OpenIddictServerAspNetCoreConstants.Properties.Error) == true
                && !properties.Items.ContainsKey(OpenIddictServerAspNetCoreConstants.Properties.ErrorUri))
            {
                context.Response.ErrorUri = null;
            }

            return default;
        }).SetOrder(OpenIddictServerHandlers.AttachDefaultChallengeError.Descriptor.Order + 1));
}
