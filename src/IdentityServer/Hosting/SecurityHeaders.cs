using System.Security.Cryptography;
using System.Text;
using IdentityServer.Authorization;

namespace IdentityServer.Hosting;

/// <summary>
/// Security headers on every response. The Content-Security-Policy allows scripts from this server's own files
/// only (no inline script), except on the authorization endpoint, whose <c>form_post</c> response page (OpenIddict's
/// and ours) submits itself with one fixed inline script, allowed there by its hash.
/// </summary>
/// <remarks>
/// <c>form-action</c>: <c>'self'</c> on our pages, except those whose forms end in a redirect to an application
/// (login, second factor, registration, consent, end session) or to another sign-in provider (connecting one on My
/// account): browsers apply <c>form-action</c> to the redirects
/// after a form submission too, and the application's address is not known when the page is rendered. A
/// <c>form_post</c> response page allows exactly the origin of the (validated) redirect URI it posts to.
/// </remarks>
public static class SecurityHeaders
{
    /// <summary>The script of every form_post page: OpenIddict's and ours.</summary>
    public const string FormPostScript = "document.form.submit();";

    private static readonly string FormPostScriptHash = ScriptHash(FormPostScript);

    private static readonly PathString[] PagesRedirectingToApplications =
    [
        "/account/login", "/account/register", "/account/sign-in-providers", ProtocolRoutes.Authorize, ProtocolRoutes.EndSession, ProtocolRoutes.Verification,
    ];

    private static readonly string FrontChannelLogoutScriptHash = ScriptHash(Logout.FrontChannelLogout.ContinueScript);

    /// <summary>A CSP source allowing exactly this inline script.</summary>
    private static string ScriptHash(string script) => $"'sha256-{Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(script)))}'";

    private sealed class Policy
    {
        public string? FormAction { get; set; }

        /// <summary>The origins this page frames (front-channel logout); none when empty.</summary>
        public List<string> FrameSources { get; } = [];

        public bool FrontChannelLogoutScript { get; set; }
    }

    public static IApplicationBuilder UseSecurityHeaders(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        var policy = new Policy
        {
            FormAction = PagesRedirectingToApplications.Any(p => context.Request.Path.StartsWithSegments(p, StringComparison.OrdinalIgnoreCase))
                ? null
                : "'self'",
        };
        context.Features.Set(policy);
        var authorizationEndpoint = context.Request.Path.StartsWithSegments(ProtocolRoutes.Authorize, StringComparison.OrdinalIgnoreCase);
        context.Response.OnStarting(() =>
        {
            var headers = context.Response.Headers;
            headers.XContentTypeOptions = "nosniff";
            headers["Referrer-Policy"] = "no-referrer";
            headers.XFrameOptions = "DENY";
            headers.ContentSecurityPolicy = string.Join("; ", new[]
            {
                "default-src 'self'",
                authorizationEndpoint ? $"script-src 'self' {FormPostScriptHash}"
                    : policy.FrontChannelLogoutScript ? $"script-src 'self' {FrontChannelLogoutScriptHash}"
                    : "script-src 'self'",
                policy.FrameSources.Count > 0 ? $"frame-src {string.Join(' ', policy.FrameSources.Distinct())}" : null,
                "style-src 'self'",
                "img-src 'self' data:",
                "object-src 'none'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
                policy.FormAction is null ? null : $"form-action {policy.FormAction}",
            }.Where(d => d is not null));
            return Task.CompletedTask;
        });
        return next(context);
    });

    /// <summary>
    /// This response is a form_post page: its form may post to <paramref name="redirectUri"/> (already validated as
    /// the client's registered redirect URI), and nowhere else.
    /// </summary>
    public static void AllowFormPostTo(this HttpContext context, string redirectUri)
    {
        if (context.Features.Get<Policy>() is { } policy && SourceOf(redirectUri) is { } source)
        {
            policy.FormAction = source;
        }
    }

    /// <summary>This page frames <paramref name="uris"/> (clients' front-channel logout URIs, validated): their origins may be framed.</summary>
    public static void AllowFrames(this HttpContext context, IEnumerable<string> uris)
    {
        if (context.Features.Get<Policy>() is { } policy)
        {
            policy.FrameSources.AddRange(uris.Select(SourceOf).OfType<string>());
        }
    }

    /// <summary>This page is the front-channel logout page, which continues by its one fixed script.</summary>
    public static void AllowFrontChannelLogoutScript(this HttpContext context)
    {
        if (context.Features.Get<Policy>() is { } policy)
        {
            policy.FrontChannelLogoutScript = true;
        }
    }

    /// <summary>A CSP source for the URI: its origin (http/https), or its scheme (a native app's private-use scheme).</summary>
    private static string? SourceOf(string uri)
    {
        if (!Uri.TryCreate(uri, UriKind.Absolute, out var parsed))
        {
            return null;
        }

        // A name as DNS has it (punycode), since a CSP source is ASCII; an IP address as written (IPv6 in brackets).
        var host = Shared.AbsoluteUris.HostOf(parsed);
        var source = parsed.Scheme is "http" or "https"
            ? $"{parsed.Scheme}://{host}{(parsed.IsDefaultPort ? "" : $":{parsed.Port}")}"
            : parsed.Scheme + ":";
        return source.Any(c => char.IsWhiteSpace(c) || c is ';' or ',' or '\'' or '"') ? null : source;
    }
}
