using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;

namespace IdentityServer.Authorization;

public static class ServerIssuer
{
    /// <summary>The issuer OpenIddict names in this request's tokens: the configured one, else the request's base address.</summary>
    public static Uri? Of(HttpContext http, OpenIddictServerOptions server) =>
        server.Issuer ?? http.Features.Get<OpenIddictServerAspNetCoreFeature>()?.Transaction?.BaseUri;
}
