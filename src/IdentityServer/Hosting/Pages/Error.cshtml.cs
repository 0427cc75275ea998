using Microsoft.AspNetCore;
using System.Diagnostics;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Filters;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Hosting.Pages;

/// <summary>The friendly error page: what went wrong in words, a request id, never a stack trace.</summary>
[AllowAnonymous]
[IgnoreAntiforgeryToken]
[ResponseCache(Duration = 0, Location = ResponseCacheLocation.None, NoStore = true)]
public sealed class ErrorModel : PageModel
{
    public string Title { get; private set; } = "Something went wrong";

    public string Message { get; private set; } = "The server could not complete your request.";

    public string RequestId => Activity.Current?.Id ?? HttpContext.TraceIdentifier;

    /// <summary>
    /// Here rather than in OnGet and OnPost: shown for another request's status, the page answers that request's method
    /// (a PUT to an unknown address), for which it has no handler.
    /// </summary>
    public override void OnPageHandlerExecuting(PageHandlerExecutingContext context) =>
        Describe(int.TryParse(Request.Query["status"], out var status) ? status : null);

    /// <summary>
    /// The OAuth error of a protocol request that ended here rather than at its client (an error for a client that
    /// registered itself, which this server does not redirect), so the person and the app's developer see which.
    /// </summary>
    public Shared.ProtocolError? Protocol { get; private set; }

    private void Describe(int? status)
    {
        if (HttpContext.GetOpenIddictServerResponse() is { Error: { Length: > 0 } error } response)
        {
            Protocol = new Shared.ProtocolError(error, response.ErrorDescription, RequestId);
        }

        if (status == StatusCodes.Status404NotFound)
        {
            Title = "Page not found";
            Message = "There is no page at this address.";
        }
        else if (status is >= 400 and < 500)
        {
            Title = "Request not valid";
            Message = "The server could not understand this request.";
        }
    }
}
