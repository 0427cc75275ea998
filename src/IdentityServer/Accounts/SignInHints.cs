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

    /// <summary>
    /// The application's <c>login_hint</c> (OpenID Connect Core 3.1.2.1), copied under our own name so that it reaches
    /// the page for a pushed request too, whose parameters are not in the URL.
    /// </summary>
    public const string LoginHintParameter = "x_login_hint";

    /// <summary>Longer hints are ignored: a user name or email address is far shorter.</summary>
    public const int MaxLoginHintLength = 256;

    /// <summary>A hint from a local return URL's query; null when absent or when the URL is not ours.</summary>
    public static string? Read(this IUrlHelper url, string? returnUrl, string parameter) =>
        url.IsLocalUrl(returnUrl) && returnUrl.IndexOf('?') is var query and >= 0
            && QueryHelpers.ParseQuery(returnUrl[query..]).TryGetValue(parameter, out var value) && !string.IsNullOrWhiteSpace(value)
                ? value.ToString()
                : null;

    /// <summary>The login hint to show in the page's user name or email field, if it is one a person could type.</summary>
    public static string? ReadLoginHint(this IUrlHelper url, string? returnUrl) =>
        url.Read(returnUrl, LoginHintParameter)?.Trim() is { Length: > 0 and <= MaxLoginHintLength } hint && !hint.Any(char.IsControl)
            ? hint
            : null;
}
