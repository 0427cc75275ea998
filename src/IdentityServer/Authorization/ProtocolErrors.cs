using Microsoft.AspNetCore.Authentication;
using OpenIddict.Server.AspNetCore;

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
}
