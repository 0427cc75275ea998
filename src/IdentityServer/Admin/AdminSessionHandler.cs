using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace IdentityServer.Admin;

/// <summary>
/// The admin API without a bearer token: the session cookie authenticates, but refusals are the API's, not the
/// login page's: 401 with a bearer challenge when there is no session, 403 when the session is not an admin's.
/// </summary>
public sealed class AdminSessionHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "AdminApi.Session";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync() => Context.AuthenticateAsync(IdentityConstants.ApplicationScheme);

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        return Task.CompletedTask;
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        Response.Headers.WWWAuthenticate = "Bearer error=\"insufficient_access\", error_description=\"The admin API needs an access token with the admin scope or the session of a user in the admin role.\"";
        return Task.CompletedTask;
    }
}
