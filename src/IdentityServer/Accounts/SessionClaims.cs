using System.Globalization;
using System.Security.Claims;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Accounts;

/// <summary>
/// The claims that describe the sign-in itself (when and how), kept in the session cookie so that id tokens can
/// carry <c>auth_time</c>, <c>amr</c> and <c>acr</c>, and <c>max_age</c> and <c>acr_values</c> can be checked.
/// </summary>
/// <remarks>
/// <c>amr</c> values (RFC 8176) by way of signing in: password <c>pwd</c>; password and authenticator code
/// <c>pwd otp mfa</c>; password and recovery code <c>pwd otp mfa</c> (a recovery code is a one-time password);
/// passkey <c>hwk mfa</c>, or <c>swk mfa</c> for a synced (backup-eligible) passkey: a passkey is possession plus
/// the user verification (PIN or biometric) the server requires; another OpenID Connect provider <c>fed</c> (a federated
/// assertion, as Microsoft Entra ID says it), with <c>otp mfa</c> after it when the account's second factor was asked.
/// </remarks>
public static class SessionClaims
{
    public const string AuthenticationMethod = Claims.AuthenticationMethodReference;
    public const string AuthenticationTime = Claims.AuthenticationTime;

    /// <summary>The session's row on the server (<see cref="UserSession"/>); also the <c>sid</c> of identity tokens and logout tokens.</summary>
    public const string SessionId = "sid";

    public const string Password = "pwd";
    public const string OneTimePassword = "otp";
    public const string MultipleFactors = "mfa";
    public const string HardwareKey = "hwk";
    public const string SoftwareKey = "swk";
    public const string Federated = "fed";

    /// <summary>The session's claims; <c>auth_time</c> is when it began, or <paramref name="authenticatedAt"/> (a provider's, earlier).</summary>
    public static Claim[] ForSignIn(UserSession session, DateTimeOffset? authenticatedAt = null) =>
    [
        new(SessionId, session.Id),
        new(AuthenticationTime, (authenticatedAt ?? new DateTimeOffset(session.SignedInAt, TimeSpan.Zero)).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture),
            ClaimValueTypes.Integer64),
        .. session.MethodList().Select(method => new Claim(AuthenticationMethod, method)),
    ];

    /// <summary>Whether <paramref name="claim"/> describes the sign-in (and so must survive a cookie refresh).</summary>
    public static bool IsSessionClaim(Claim claim) => claim.Type is SessionId or AuthenticationTime or AuthenticationMethod;

    public static string? GetSessionId(ClaimsPrincipal principal) => principal.FindFirst(SessionId)?.Value;

    /// <summary>
    /// The principal's <c>auth_time</c>: a session's, or another provider's identity token's (so any value, which is
    /// taken only within the range of a date).
    /// </summary>
    public static DateTimeOffset? GetAuthenticationTime(ClaimsPrincipal principal) =>
        long.TryParse(principal.FindFirst(AuthenticationTime)?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds)
        && seconds is > 0 and < 253402300800 // up to the year 9999, DateTimeOffset's last
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;

    public static IReadOnlySet<string> GetMethods(ClaimsPrincipal principal) =>
        principal.FindAll(AuthenticationMethod).Select(c => c.Value).ToHashSet(StringComparer.Ordinal);
}
