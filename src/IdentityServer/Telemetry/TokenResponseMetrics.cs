using IdentityServer.Authorization;
using Microsoft.AspNetCore.Http.Features;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Telemetry;

/// <summary>Counts what the token endpoint answers: the tokens it issued, or the error it returned.</summary>
public sealed class TokenResponseMetrics(ServerMetrics metrics) : IOpenIddictServerHandler<ApplyTokenResponseContext>
{
    public ValueTask HandleAsync(ApplyTokenResponseContext context)
    {
        var response = context.Response;
        var grantType = context.Request?.GrantType;
        if (!string.IsNullOrEmpty(response.Error))
        {
            metrics.TokenError(response.Error, grantType);
            return ValueTask.CompletedTask;
        }

        // Only a successful response gets here without an error: the client id was authenticated (or is a registered public client).
        var clientId = context.Request?.ClientId;
        if (!string.IsNullOrEmpty(response.AccessToken))
        {
            metrics.TokenIssued(grantType, clientId, "access_token");
        }

        if (!string.IsNullOrEmpty(response.RefreshToken))
        {
            metrics.TokenIssued(grantType, clientId, "refresh_token");
        }

        if (!string.IsNullOrEmpty(response.IdToken))
        {
            metrics.TokenIssued(grantType, clientId, "id_token");
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Counts an error answer to a token request that OpenIddict did not write, so the counter has every error of the
    /// token endpoint: the rate limiter's <c>temporarily_unavailable</c> (429), and the exception handler's (503 when the
    /// database is down, <c>invalid_request</c> for a body that cannot be read, a lost race, <c>server_error</c>). The
    /// grant type comes from the form only if it was read already: a body that cannot be read has none.
    /// </summary>
    public static void CountAnsweredOutsideOpenIddict(HttpContext context, string error)
    {
        if (!context.Request.Path.Equals(ProtocolRoutes.Token, StringComparison.OrdinalIgnoreCase))
        {
            return;
        }

        var grantType = context.Features.Get<IFormFeature>()?.Form?[Parameters.GrantType].ToString();
        context.RequestServices.GetRequiredService<ServerMetrics>().TokenError(error, string.IsNullOrEmpty(grantType) ? null : grantType);
    }
}
