using System.Net;

namespace IdentityServer.Shared;

/// <summary>
/// The start of the few pages written without Razor (the error page, the rate limit's page, the front-channel logout
/// page): the document's head with its title and the style sheet, under the path base.
/// </summary>
public static class HandWrittenPage
{
    public static string Head(HttpRequest request, string title) =>
        $"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{WebUtility.HtmlEncode(title)}</title>" +
        $"<link rel=\"stylesheet\" href=\"{WebUtility.HtmlEncode(request.PathBase + "/site.css")}\"></head>";
}
