using System.Globalization;
using System.Security.Claims;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Accounts;

/// <summary>
/// The claims that describe the sign-in itself (when and how), kept in the session cookie so that id tokens can
/// carry <c>auth_time</c> and <c>amr</c>, and <c>max_age</c> can be checked.
/// </summary>
public static class SessionClaims
{
    public const string AuthenticationMethod = Claims.AuthenticationMethodReference;
    public const string AuthenticationTime = Claims.AuthenticationTime;
    public const string Password = "pwd";

    public static Claim[] ForSignIn(DateTimeOffset now, string method) =>
    [
        new(AuthenticationTime, now.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture), ClaimValueTypes.Integer64),
        new(AuthenticationMethod, method),
    ];

    public static DateTimeOffset? GetAuthenticationTime(ClaimsPrincipal principal) =>
        long.TryParse(principal.FindFirst(AuthenticationTime)?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;
}
