namespace IdentityServer.Authorization;

/// <summary>Where the protocol endpoints live. Clients find them through discovery; these are for the server itself.</summary>
public static class ProtocolRoutes
{
    public const string Authorize = "/connect/authorize";
    public const string PushedAuthorization = "/connect/par";
    public const string Token = "/connect/token";
    public const string UserInfo = "/connect/userinfo";
    public const string EndSession = "/connect/endsession";
    public const string Introspection = "/connect/introspect";
    public const string Revocation = "/connect/revoke";
    public const string DeviceAuthorization = "/connect/device";
    public const string Verification = "/connect/verify";
    public const string Registration = "/connect/register";
    public const string Discovery = "/.well-known/openid-configuration";
    public const string Jwks = "/.well-known/jwks";

    /// <summary>Paths that answer with OAuth error JSON rather than an error page.</summary>
    public static bool IsProtocolApi(PathString path) =>
        path.StartsWithSegments("/.well-known")
        || path.StartsWithSegments(Token) || path.StartsWithSegments(UserInfo) || path.StartsWithSegments(Introspection)
        || path.StartsWithSegments(Revocation) || path.StartsWithSegments(DeviceAuthorization)
        || path.StartsWithSegments(PushedAuthorization) || path.StartsWithSegments(Registration);
}
