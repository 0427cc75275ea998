namespace IdentityServer.Accounts;

/// <summary>
/// The <c>acr</c> values this server supports (advertised in discovery as <c>acr_values_supported</c>), from weakest
/// to strongest: <c>pwd</c> any sign-in; <c>mfa</c> a second factor (authenticator or recovery code) or a passkey;
/// <c>phr</c> a passkey (phishing-resistant, as in the OpenID EAP ACR values). A request's <c>acr_values</c> is met when
/// the session meets any value it lists that we know; unknown values are ignored.
/// </summary>
public static class AuthenticationLevels
{
    public const string Password = "pwd";
    public const string MultiFactor = "mfa";
    public const string PhishingResistant = "phr";

    public static readonly string[] Supported = [Password, MultiFactor, PhishingResistant];

    public static bool Satisfies(string level, IReadOnlySet<string> methods) => level switch
    {
        Password => true,
        MultiFactor => methods.Contains(SessionClaims.MultipleFactors),
        PhishingResistant => methods.Contains(SessionClaims.HardwareKey) || methods.Contains(SessionClaims.SoftwareKey),
        _ => false,
    };

    /// <summary>The levels of <paramref name="requested"/> that this server knows, in the client's order.</summary>
    public static string[] Known(IEnumerable<string> requested) => [.. requested.Where(Supported.Contains)];

    /// <summary>Whether the session meets the request (no known value requested: always).</summary>
    public static bool Meets(IEnumerable<string> requested, IReadOnlySet<string> methods)
    {
        var known = Known(requested);
        return known.Length == 0 || known.Any(level => Satisfies(level, methods));
    }

    /// <summary>
    /// The <c>acr</c> of an id token: the first requested level the session meets, else the strongest it meets.
    /// </summary>
    public static string Achieved(IEnumerable<string> requested, IReadOnlySet<string> methods) =>
        Known(requested).FirstOrDefault(level => Satisfies(level, methods))
        ?? Supported.Last(level => Satisfies(level, methods));

    /// <summary>The weakest level that meets the request: what the login page should aim for.</summary>
    public static string? Target(IEnumerable<string> requested)
    {
        var known = Known(requested);
        return known.Length == 0 || known.Contains(Password) ? null : known.Contains(MultiFactor) ? MultiFactor : PhishingResistant;
    }
}
