using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Filters;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts;

/// <summary>
/// Changes to how an account signs in (second factors, passkeys) need a recent sign-in, not only a session: a session
/// found unattended, or stolen, cannot switch them off or add its own. A session older than
/// <c>Accounts:RecentSignIn</c> is sent to sign in again and comes back to the page; a form it posted is not replayed.
/// Only changes are guarded (<see cref="IncludingGet"/> for a page whose GET changes something).
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class RequireRecentSignInAttribute : Attribute, IAsyncPageFilter
{
    public bool IncludingGet { get; init; }

    public Task OnPageHandlerSelectionAsync(PageHandlerSelectedContext context) => Task.CompletedTask;

    public async Task OnPageHandlerExecutionAsync(PageHandlerExecutingContext context, PageHandlerExecutionDelegate next)
    {
        var http = context.HttpContext;
        var guarded = IncludingGet || !(HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method));
        if (guarded && http.User.Identity?.IsAuthenticated == true && !IsRecent(http))
        {
            context.Result = SignInAgain(http);
            return;
        }

        await next();
    }

    /// <summary>Whether the session signed in within <c>Accounts:RecentSignIn</c>.</summary>
    public static bool IsRecent(HttpContext http)
    {
        var window = http.RequestServices.GetRequiredService<IOptions<AccountsOptions>>().Value.RecentSignIn;
        var now = http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        return SessionClaims.GetAuthenticationTime(http.User) is { } signedInAt && now - signedInAt <= window;
    }

    /// <summary>To the login page, and back to this page after it.</summary>
    public static RedirectResult SignInAgain(HttpContext http) =>
        new($"~{AccountsExtensions.LoginPath}?ReturnUrl={Uri.EscapeDataString($"{http.Request.PathBase}{http.Request.Path}")}");
}
