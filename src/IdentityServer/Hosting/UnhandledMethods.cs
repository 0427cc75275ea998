using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Filters;

namespace IdentityServer.Hosting;

/// <summary>
/// A request whose method a page has no handler at all for (a PUT or DELETE to a page that answers GET and POST) is 405 with
/// the methods it does answer: Razor Pages would otherwise render the page without running any handler, such as an
/// empty consent page for a PUT to the authorization endpoint.
/// </summary>
public sealed class UnhandledMethods : IAsyncPageFilter
{
    public Task OnPageHandlerSelectionAsync(PageHandlerSelectedContext context) => Task.CompletedTask;

    public Task OnPageHandlerExecutionAsync(PageHandlerExecutingContext context, PageHandlerExecutionDelegate next)
    {
        var method = context.HttpContext.Request.Method;
        // The error page shown for another request's status (a PUT to an unknown address) answers in that request's method.
        if (context.HandlerMethod is not null || HttpMethods.IsGet(method) || HttpMethods.IsHead(method)
            || context.HttpContext.Features.Get<IStatusCodeReExecuteFeature>() is not null
            || context.ActionDescriptor.HandlerMethods.Any(handler => string.Equals(handler.HttpMethod, method, StringComparison.OrdinalIgnoreCase)))
        {
            return next(); // a method the page takes (with an unknown handler name, say): Razor Pages' own answer
        }

        var answered = context.ActionDescriptor.HandlerMethods.Select(handler => handler.HttpMethod.ToUpperInvariant()).ToHashSet();
        if (answered.Contains(HttpMethods.Get))
        {
            answered.Add(HttpMethods.Head);
        }

        context.HttpContext.Response.Headers.Allow = string.Join(", ", answered.Order(StringComparer.Ordinal));
        context.Result = new StatusCodeResult(StatusCodes.Status405MethodNotAllowed);
        return Task.CompletedTask;
    }
}
