using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Accounts;

/// <summary>Where the account pages send a person back to once done.</summary>
public static class ReturnUrls
{
    /// <summary>
    /// A return URL of this server: local (no other host), and under its path base when it has one
    /// (<c>Hosting:PathBase</c>), not another application's on the same host.
    /// </summary>
    public static bool IsOurs(this IUrlHelper url, [NotNullWhen(true)] string? returnUrl)
    {
        if (!url.IsLocalUrl(returnUrl))
        {
            return false;
        }

        var pathBase = url.ActionContext.HttpContext.Request.PathBase;
        if (!pathBase.HasValue)
        {
            return true;
        }

        // A browser resolves dot segments (also percent-encoded, or after a backslash): /identity/../other-app is
        // another application's page, though it starts with the path base.
        var path = returnUrl.Split('?', '#')[0];
        if (HasDotSegment(path))
        {
            return false;
        }

        return returnUrl.StartsWith("~/", StringComparison.Ordinal) || new PathString(path).StartsWithSegments(pathBase, StringComparison.Ordinal);
    }

    private static bool HasDotSegment(string path) =>
        Uri.UnescapeDataString(path).Split('/', '\\').Any(segment => segment is "." or "..");

    /// <summary>The return URL when it is ours (<see cref="IsOurs"/>), else <paramref name="fallback"/> (an app-relative <c>~/</c> path).</summary>
    public static string OursOr(this IUrlHelper url, string? returnUrl, string fallback) => url.IsOurs(returnUrl) ? returnUrl : fallback;
}
