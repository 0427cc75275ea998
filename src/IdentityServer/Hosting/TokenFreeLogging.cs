using Microsoft.Extensions.Options;

namespace IdentityServer.Hosting;

/// <summary>
/// OpenIddict writes every token it creates or validates, whole, at the Trace level: bearer access tokens, refresh
/// tokens, authorization codes, which whoever reads the logs could then use. Wherever the logging configuration lets
/// Trace through to OpenIddict (its own category, a broader one such as <c>Default</c>, or the minimum level), this
/// lowers it to Debug for OpenIddict; a configured Debug or higher level is left as it is.
/// </summary>
internal sealed class TokenFreeLogging : IPostConfigureOptions<LoggerFilterOptions>
{
    private const string OpenIddict = "OpenIddict";

    public void PostConfigure(string? name, LoggerFilterOptions options)
    {
        var rules = options.Rules;
        // The minimum level is what a logger gets when no rule applies: a broad rule of no provider.
        var broadOnes = rules.Any(r => r.ProviderName is null && r.CategoryName is null) || options.MinLevel > LogLevel.Trace
            ? new List<string?>()
            : [null];
        for (var i = 0; i < rules.Count; i++)
        {
            var rule = rules[i];
            if (rule.LogLevel is { } level && level > LogLevel.Trace)
            {
                continue;
            }

            if (rule.CategoryName?.StartsWith(OpenIddict, StringComparison.OrdinalIgnoreCase) == true)
            {
                rules[i] = new LoggerFilterRule(rule.ProviderName, rule.CategoryName, LogLevel.Debug, rule.Filter);
            }
            else if (rule.CategoryName is null || OpenIddict.StartsWith(rule.CategoryName.TrimEnd('*'), StringComparison.OrdinalIgnoreCase))
            {
                broadOnes.Add(rule.ProviderName);
            }
        }

        // A rule for OpenIddict itself outranks the broader one for the same provider; one already there was handled above.
        foreach (var provider in broadOnes.Distinct(StringComparer.OrdinalIgnoreCase))
        {
            if (!rules.Any(r => string.Equals(r.ProviderName, provider, StringComparison.OrdinalIgnoreCase)
                    && string.Equals(r.CategoryName, OpenIddict, StringComparison.OrdinalIgnoreCase)))
            {
                rules.Add(new LoggerFilterRule(provider, OpenIddict, LogLevel.Debug, null));
            }
        }
    }
}
