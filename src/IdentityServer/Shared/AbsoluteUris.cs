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
}
