using System.Diagnostics.CodeAnalysis;

namespace IdentityServer.Shared;

/// <summary>The URIs an admin registers (redirect URIs, API audiences): absolute, and stored exactly as sent.</summary>
public static class AbsoluteUris
{
    public const int MaxLength = 2000;

    /// <summary>
    /// An absolute URI of at most <see cref="MaxLength"/> characters, without spaces or control characters: a URI
    /// cannot hold them raw, and <see cref="Uri"/> would quietly escape some of them, so what is matched later would not
    /// be what was registered.
    /// </summary>
    public static bool TryParse([NotNullWhen(true)] string? value, [NotNullWhen(true)] out Uri? uri)
    {
        uri = null;
        return value is { Length: > 0 and <= MaxLength }
            && !value.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))
            && Uri.TryCreate(value, UriKind.Absolute, out uri);
    }

    /// <summary>
    /// An absolute http or https URL without user information, query or fragment (an address configured for this server:
    /// its issuer, its public origin, a listener); with <paramref name="originOnly"/>, without a path either.
    /// </summary>
    public static bool IsHttpUrl(Uri uri, bool originOnly) =>
        uri.IsAbsoluteUri && uri.Scheme is ("http" or "https") && uri.UserInfo.Length == 0 && uri.Query.Length == 0 && uri.Fragment.Length == 0
        && (!originOnly || uri.AbsolutePath == "/");

    /// <summary>A URI's host as DNS has it: a name in punycode (a look-alike name in another script shows as what it is), an IP address as written.</summary>
    public static string HostOf(Uri uri) => uri.HostNameType == UriHostNameType.Dns ? uri.IdnHost : uri.Host;

    /// <summary>
    /// Where a URI leads, for a person to read before going there: its host (<see cref="HostOf"/>) with a port other than
    /// the default, or for a URI without a host (a native app's private-use scheme) its scheme.
    /// </summary>
    public static string DestinationOf(Uri uri) =>
        uri.Host.Length == 0 ? uri.Scheme + ":" : uri.IsDefaultPort ? HostOf(uri) : $"{HostOf(uri)}:{uri.Port}";
}
