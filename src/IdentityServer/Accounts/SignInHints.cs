using System.Security.Cryptography;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.WebUtilities;

namespace IdentityServer.Accounts;

/// <summary>
/// What the authorization endpoint tells the login and registration pages through the return URL it sends them with:
/// hints for the page only. Every check stays at the authorization endpoint, which reads the request itself.
/// </summary>
public static class SignInHints
{
    /// <summary>The authentication level the application asks for (<see cref="AuthenticationLevels"/>), when more than a password.</summary>
    public const string LevelParameter = "x_acr";

    /// <summary>The application's <c>login_hint</c>, protected (<see cref="LoginHints"/>).</summary>
    public const string LoginHintParameter = "x_login_hint";

    /// <summary>A hint from a local return URL's query; null when absent or when the URL is not ours.</summary>
    public static string? Read(this IUrlHelper url, string? returnUrl, string parameter) =>
        url.IsOurs(returnUrl) && returnUrl.IndexOf('?') is var query and >= 0
            && QueryHelpers.ParseQuery(returnUrl[query..]).TryGetValue(parameter, out var value) && !string.IsNullOrWhiteSpace(value)
                ? value.ToString()
                : null;
}

/// <summary>
/// The application's <c>login_hint</c> (OpenID Connect Core 3.1.2.1) on its way to the login page, which fills in the
/// user name with it. Carried under our own name, so that it reaches the page for a pushed request too, and protected,
/// so that a pushed request's hint (often an email address, which the application kept off the browser's address bar
/// by pushing it) does not appear in the URL, the browser's history or the server's request log.
/// </summary>
public sealed class LoginHints(IDataProtectionProvider dataProtection)
{
    /// <summary>Longer hints are ignored: a user name or email address is far shorter.</summary>
    public const int MaxLength = 256;

    private readonly IDataProtector _protector = dataProtection.CreateProtector("IdentityServer.Accounts.LoginHint.v1");

    /// <summary>The value of <see cref="SignInHints.LoginHintParameter"/> for a hint a person could type; null for any other.</summary>
    public string? Protect(string? hint) => Usable(hint) is { } usable ? _protector.Protect(usable) : null;

    /// <summary>The hint a local return URL carries, to show in the user name or email field; null when it carries none of ours.</summary>
    public string? Read(IUrlHelper url, string? returnUrl)
    {
        if (url.Read(returnUrl, SignInHints.LoginHintParameter) is not { } carried)
        {
            return null;
        }

        try
        {
            return Usable(_protector.Unprotect(carried));
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    private static string? Usable(string? hint) =>
        hint?.Trim() is { Length: > 0 and <= MaxLength } trimmed && !trimmed.Any(char.IsControl) ? trimmed : null;
}
