using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;

namespace IdentityServer.Authorization;

public static class ServerIssuer
{
    /// <summary>
    /// The issuer OpenIddict names in this request's tokens: the configured one, else the request's base address (scheme,
    /// host and path base, as OpenIddict takes it; worked out here too for a request OpenIddict does not handle).
    /// </summary>
    public static Uri Of(HttpContext http, OpenIddictServerOptions server) =>
        server.Issuer ?? http.Features.Get<OpenIddictServerAspNetCoreFeature>()?.Transaction?.BaseUri
        ?? new Uri($"{http.Request.Scheme}://{http.Request.Host}{http.Request.PathBase}/");
}
