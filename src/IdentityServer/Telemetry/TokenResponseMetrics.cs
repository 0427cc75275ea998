using OpenIddict.Server;
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
}
