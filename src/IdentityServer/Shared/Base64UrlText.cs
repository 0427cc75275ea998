namespace IdentityServer.Shared;

/// <summary>Text in base64url without padding (RFC 4648 section 5, as JOSE and PKCE use it), checked before it is decoded.</summary>
public static class Base64UrlText
{
    /// <summary>Length of a SHA-256 digest in base64url: a PKCE S256 challenge, a JWK thumbprint.</summary>
    public const int Sha256Length = 43;

    /// <summary>Whether every character is of the URL-safe alphabet (letters, digits, <c>-</c> and <c>_</c>; no padding).</summary>
    public static bool IsAlphabet(string text) => text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    /// <summary>Whether <paramref name="text"/> can be a SHA-256 digest in base64url (43 characters of the alphabet).</summary>
    public static bool IsSha256(string? text) => text is { Length: Sha256Length } && IsAlphabet(text);
}
