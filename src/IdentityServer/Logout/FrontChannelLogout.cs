using System.Net;
using System.Security.Claims;
using System.Text;
using IdentityServer.Accounts;
using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.ViewFeatures;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;

namespace IdentityServer.Logout;

/// <summary>
/// OpenID Connect Front-Channel Logout 1.0: when the user signs out here in a browser (the sign-out page, "sign out
/// everywhere", RP-initiated logout), the page loads the front-channel logout URI of each client the session signed in to in a hidden frame, with
/// <c>iss</c> and <c>sid</c>, so each app ends its own session in that browser. The clients are those recorded for the
/// session (<see cref="UserSessionClient"/>), read before the session ends; the URI is the client's as it is now.
/// </summary>
public sealed class FrontChannelLogout(ApplicationDbContext db, IOpenIddictApplicationManager applications)
{
    /// <summary>The script of the page that continues after the frames: fixed, so the policy allows it by its hash.</summary>
    public const string ContinueScript =
        "var gone;function go(){if(!gone){gone=1;location.replace(document.getElementById('continue').href)}}addEventListener('load',go);setTimeout(go,5000);";

    private const string HandOverKey = "FrontChannelFrames";

    /// <summary>Keeps <paramref name="frames"/> for the page a redirect leads to (<see cref="TakeOver"/>).</summary>
    public static void HandOver(ITempDataDictionary tempData, IReadOnlyList<string> frames)
    {
        if (frames.Count > 0)
        {
            tempData[HandOverKey] = string.Join('\n', frames);
        }
    }

    /// <summary>The frames handed over by the request before; none when there were none.</summary>
    public static IReadOnlyList<string> TakeOver(ITempDataDictionary tempData) =>
        tempData[HandOverKey] is string frames ? frames.Split('\n') : [];

    /// <summary>The frames for <paramref name="session"/>'s clients: each client's front-channel logout URI with <c>iss</c> and <c>sid</c>.</summary>
    public async Task<IReadOnlyList<string>> FramesAsync(ClaimsPrincipal? session, CancellationToken ct)
    {
        if (session is null || SessionClaims.GetSessionId(session) is not { } sessionId)
        {
            return [];
        }

        var clients = await db.Set<UserSessionClient>().AsNoTracking().Where(c => c.SessionId == sessionId)
            .Select(c => new { c.ClientId, c.Issuer }).ToListAsync(ct);
        var frames = new List<string>();
        foreach (var client in clients.OrderBy(c => c.ClientId, StringComparer.Ordinal))
        {
            if ((await StoredClientProperties.OfClientAsync(applications, client.ClientId, ct))?.FrontChannelLogoutUri is { } uri)
            {
                frames.Add(QueryHelpers.AddQueryString(uri, new Dictionary<string, string?> { ["iss"] = client.Issuer, ["sid"] = sessionId }));
            }
        }

        return frames;
    }

    /// <summary>
    /// Where a redirect already written to <paramref name="response"/> points, while it can still be turned into something
    /// else (not yet sent); null for any other response.
    /// </summary>
    public static string? PendingRedirect(HttpResponse response) =>
        !response.HasStarted && response.StatusCode is (StatusCodes.Status302Found or StatusCodes.Status303SeeOther)
            && response.Headers.Location.ToString() is { Length: > 0 } location
            ? location
            : null;

    /// <summary>
    /// Writes the page that loads <paramref name="frames"/> and then goes on to <paramref name="continueTo"/> (once every
    /// frame has loaded, or after five seconds; a link for browsers without script).
    /// </summary>
    public static async Task WritePageAsync(HttpContext http, IReadOnlyList<string> frames, string continueTo)
    {
        http.AllowFrames(frames);
        http.AllowFrontChannelLogoutScript();
        var page = new StringBuilder()
            .Append(Shared.HandWrittenPage.Head(http.Request, "Signing out"))
            .Append("<body><main><h1>Signing you out</h1>")
            .Append("<p>Signing you out of the applications you used. <a id=\"continue\" href=\"").Append(WebUtility.HtmlEncode(continueTo))
            .Append("\">Continue</a></p>");
        foreach (var frame in frames)
        {
            page.Append("<iframe hidden title=\"Signing out of an application\" src=\"").Append(WebUtility.HtmlEncode(frame)).Append("\"></iframe>");
        }

        page.Append("</main><script>").Append(ContinueScript).Append("</script></body></html>");
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = "text/html; charset=utf-8";
        http.Response.Headers.CacheControl = "no-store";
        await http.Response.WriteAsync(page.ToString());
    }
}

/// <summary>
/// The result of a sign-out that ends in a redirect (to the client's post-logout redirect URI, or the signed-out page),
/// with the front-channel frames loaded first: the redirect is written, then turned into the page that loads the frames
/// and continues to where it pointed. With <paramref name="pageWithoutFrames"/> the page is written even without frames:
/// a form's answer that redirects to another site is blocked by the page's <c>form-action 'self'</c>, while the page's
/// script may go anywhere.
/// </summary>
public sealed class FrontChannelLogoutResult(IActionResult redirect, IReadOnlyList<string> frames, bool pageWithoutFrames = false) : IActionResult
{
    public async Task ExecuteResultAsync(ActionContext context)
    {
        await redirect.ExecuteResultAsync(context);
        var response = context.HttpContext.Response;
        if ((frames.Count == 0 && !pageWithoutFrames) || FrontChannelLogout.PendingRedirect(response) is not { } location)
        {
            return;
        }

        response.Headers.Remove(Microsoft.Net.Http.Headers.HeaderNames.Location);
        await FrontChannelLogout.WritePageAsync(context.HttpContext, frames, location);
    }
}
