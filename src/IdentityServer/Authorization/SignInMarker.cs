using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Primitives;

namespace IdentityServer.Authorization;

/// <summary>
/// "This authorization request sent the user to sign in at time T": added to the request's return URL when
/// <c>prompt=login</c> or <c>max_age</c> forces a sign-in, so that the sign-in made then satisfies the request and
/// the user is not sent round in circles. Protected with Data Protection and bound to the request's own
/// parameters, so it can be neither forged nor carried over to another request to skip a forced sign-in.
/// </summary>
public sealed class SignInMarker(IDataProtectionProvider dataProtection)
{
    public const string Parameter = "x_login_after";

    private readonly IDataProtector _protector = dataProtection.CreateProtector("IdentityServer.Authorization.SignInMarker.v1");

    public string Create(IEnumerable<KeyValuePair<string, StringValues>> request, DateTimeOffset now) =>
        _protector.Protect($"{now.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)}|{Fingerprint(request)}");

    /// <summary>When this request sent the user to sign in, or null when it carries no valid marker of its own.</summary>
    public DateTimeOffset? Read(IEnumerable<KeyValuePair<string, StringValues>> request)
    {
        var parameters = request.ToList();
        var value = parameters.FirstOrDefault(p => p.Key == Parameter).Value.ToString();
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        try
        {
            var parts = _protector.Unprotect(value).Split('|', 2);
            return parts.Length == 2 && parts[1] == Fingerprint(parameters)
                && long.TryParse(parts[0], CultureInfo.InvariantCulture, out var seconds)
                    ? DateTimeOffset.FromUnixTimeSeconds(seconds)
                    : null;
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>A hash of the protocol parameters (ours, prefixed x_, __ or consent_, left out), in a stable order.</summary>
    private static string Fingerprint(IEnumerable<KeyValuePair<string, StringValues>> request)
    {
        var canonical = string.Join('\n', request
            .Where(p => !p.Key.StartsWith("x_", StringComparison.Ordinal) && !p.Key.StartsWith("__", StringComparison.Ordinal)
                && !p.Key.StartsWith("consent_", StringComparison.Ordinal))
            .OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => $"{p.Key}={string.Join('\u001f', p.Value.ToArray())}"));
        return Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)));
    }
}
