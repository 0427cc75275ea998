using System.Net;
using System.Text.RegularExpressions;
using IdentityServer.Hosting;

namespace IdentityServer.Accounts.External;

/// <summary>
/// One entry of the <c>ExternalProviders</c> configuration section: another OpenID Connect provider (a company's
/// Entra ID or Keycloak, Google, another instance of this server) that people may sign in with. The entry's name is
/// its key in the section, e.g. <c>ExternalProviders:contoso:Authority</c>.
/// </summary>
public sealed partial class ExternalProviderOptions
{
    public const string Section = "ExternalProviders";

    /// <summary>What the login page's button says after "Sign in with". Unset: the entry's name.</summary>
    public string? DisplayName { get; set; }

    /// <summary>The provider's issuer; its discovery document is read from <c>.well-known/openid-configuration</c> under it.</summary>
    public Uri? Authority { get; set; }

    /// <summary>This server's client id at the provider.</summary>
    public string? ClientId { get; set; }

    /// <summary>This server's client secret at the provider (<c>client_secret_post</c>); unset for a public registration (PKCE only).</summary>
    public string? ClientSecret { get; set; }

    /// <summary>The scopes asked for, space-separated.</summary>
    public string Scope { get; set; } = "openid profile email";

    /// <summary>
    /// Whether a person signing in with this provider for the first time gets a new account. Unset: as
    /// <c>Accounts:AllowRegistration</c>. Without it, only accounts that connected the provider on My account may use it.
    /// </summary>
    public bool? CreateAccounts { get; set; }

    /// <summary>
    /// Whether the provider's <c>email</c> counts as verified without <c>email_verified</c>: for a provider whose
    /// addresses are its own to give (a company's directory, such as Microsoft Entra ID, which sends no
    /// <c>email_verified</c>). Never for a provider where people type in any address.
    /// </summary>
    public bool TrustEmail { get; set; }

    /// <summary>Whether to read the person's claims from the provider's userinfo endpoint too (for providers that keep email there).</summary>
    public bool UseUserInfo { get; set; }

    /// <summary>
    /// Whether signing out here, in the browser, signs out at the provider too (its end-session endpoint; the provider
    /// must allow <c>/signin-&lt;name&gt;/signed-out</c> as a post-logout redirect URI). Off by default: the provider's
    /// session serves the person's other applications there.
    /// </summary>
    public bool SignOutAtProvider { get; set; }

    /// <summary>Entry names: the path of the provider's callback (<c>/signin-{name}</c>) and what accounts record.</summary>
    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,31}$")]
    private static partial Regex NamePattern();

    /// <summary>The problems of the entry <paramref name="name"/>, as start-up messages; none when it can work.</summary>
    public IEnumerable<string> Problems(string name)
    {
        var path = $"{Section}:{name}";
        if (!NamePattern().IsMatch(name))
        {
            yield return $"{path}: the name must be 1-32 lowercase letters, digits and hyphens (it is the callback path /signin-<name>).";
        }

        if (Authority is not { IsAbsoluteUri: true } authority || !string.IsNullOrEmpty(authority.Query) || !string.IsNullOrEmpty(authority.Fragment))
        {
            yield return $"{path}:Authority: an absolute URI without query or fragment (the provider's issuer) is required.";
        }
        else if (authority.Scheme != Uri.UriSchemeHttps && !(authority.Scheme == Uri.UriSchemeHttp && IsLoopback(authority)))
        {
            yield return $"{path}:Authority: must be https (http only on a loopback address, for a provider on this machine).";
        }

        if (string.IsNullOrWhiteSpace(ClientId))
        {
            yield return $"{path}:ClientId: this server's client id at the provider is required.";
        }

        if (!Scope.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("openid"))
        {
            yield return $"{path}:Scope: must include openid.";
        }
    }

    private static bool IsLoopback(Uri uri) =>
        uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));

    /// <summary>The section's entries, checked: a start-up error names every problem at once.</summary>
    public static IReadOnlyDictionary<string, ExternalProviderOptions> Read(IConfiguration configuration)
    {
        var providers = new SortedDictionary<string, ExternalProviderOptions>(StringComparer.Ordinal);
        foreach (var entry in configuration.GetSection(Section).GetChildren())
        {
            providers[entry.Key] = entry.Get<ExternalProviderOptions>() ?? new ExternalProviderOptions();
        }

        var problems = providers.SelectMany(p => p.Value.Problems(p.Key)).ToList();
        return problems.Count > 0 ? throw new StartupConfigurationException(string.Join(" ", problems)) : providers;
    }
}
