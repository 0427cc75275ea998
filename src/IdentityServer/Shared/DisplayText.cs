namespace IdentityServer.Shared;

/// <summary>
/// Text an admin or a registrant gives that this server shows to people (a client's name, a scope's display name and
/// description, on the consent page and in the admin pages): no control characters, which have no place in a name and
/// can break the logs and terminals it is written to, and no bidirectional formatting characters, which make a text read
/// other than what it holds (after U+202E the characters show in reverse order).
/// </summary>
public static class DisplayText
{
    public const string Problem = "must not contain control characters or bidirectional formatting characters (U+202A to U+202E, U+2066 to U+2069, U+200E, U+200F, U+061C).";

    /// <param name="allowLineBreaks">Whether CR and LF may appear (a description typed in a text area has them).</param>
    public static bool IsAcceptable(string text, bool allowLineBreaks = false) =>
        !text.Any(c => (char.IsControl(c) && !(allowLineBreaks && c is '\r' or '\n')) || IsBidiControl(c));

    private static bool IsBidiControl(char c) => c is (>= '\u202A' and <= '\u202E') or (>= '\u2066' and <= '\u2069') or '\u200E' or '\u200F' or '\u061C';
}
