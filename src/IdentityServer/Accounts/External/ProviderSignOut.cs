using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace IdentityServer.Accounts.External;

/// <summary>
/// Signing out at the provider too (<c>ExternalProviders:&lt;name&gt;:SignOutAtProvider</c>): when someone who signed in
/// here with such a provider signs out in this browser (the sign-out page, or an application's RP-initiated logout),
/// the browser goes on to the provider's end-session endpoint (OpenID Connect RP-Initiated Logout 1.0) with the
/// provider's identity token as <c>id_token_hint</c>, and comes back to <c>/signin-&lt;name&gt;/signed-out</c>, then to
/// where the sign-out was going (the signed-out page, or the application). Which provider, for whom, and its identity
/// token are kept in a cookie of this browser (<see cref="CookieName"/>), protected with the server's data protection keys.
/// </summary>
public sealed class ProviderSignOut(IDataProtectionProvider dataProtection, ExternalProviders providers, IWebHostEnvironment environment)
{
    public const string CookieName = "idsrv.provider-session";

    /// <summary>The browser sent to the provider's sign-out, for its return (<see cref="ReturnAsync"/>).</summary>
    public const string CorrelationCookieName = "idsrv.signout-correlation";

    /// <summary>How long the provider's sign-out may take for the browser to be sent on to where it was going.</summary>
    public static readonly TimeSpan ReturnWithin = TimeSpan.FromMinutes(15);

    private const string CorrelationItem = "signout_correlation";

    /// <summary>Set once the cookie is deleted in a request, so that it is deleted once.</summary>
    private const string ForgottenItem = "IdentityServer.ProviderSignOut.Forgotten";

    /// <summary>Where the identity token waits for the handler's sign-out redirect (<see cref="AttachHintAsync"/>).</summary>
    private const string HintItem = "IdentityServer.ProviderSignOut.IdTokenHint";

    /// <summary>Above this the identity token is left out (a browser keeps cookies up to about 4 KB); the provider may then ask.</summary>
    private const int MaxCookieLength = 3800;

    private readonly IDataProtector _protector = dataProtection.CreateProtector("IdentityServer.Accounts.External.ProviderSignOut.v1");

    /// <summary>A sign-out to make at <see cref="Provider"/> after the one here.</summary>
    public sealed record Target(string Provider, string? IdToken);

    private sealed record Remembered(string UserId, string Provider, string? IdToken);

    /// <summary>Remembers that <paramref name="userId"/> signed in here with <paramref name="provider"/>, when it signs out there too.</summary>
    public void Remember(HttpContext http, string userId, ExternalProvider provider, string? idToken)
    {
        if (!provider.SignOutAtProvider)
        {
            Forget(http);
            return;
        }

        var value = Protect(new Remembered(userId, provider.Name, idToken));
        if (value.Length > MaxCookieLength)
        {
            value = Protect(new Remembered(userId, provider.Name, IdToken: null));
        }

        http.Response.Cookies.Append(Cookie(http).Name!, value, Cookie(http).Build(http));
    }

    /// <summary>Forgets it: a sign-in here that no provider vouched for, a sign-out (once in a request).</summary>
    public void Forget(HttpContext http)
    {
        if (http.Request.Cookies.ContainsKey(Cookie(http).Name!) && http.Items.TryAdd(ForgottenItem, true))
        {
            http.Response.Cookies.Delete(Cookie(http).Name!, Cookie(http).Build(http));
        }
    }

    /// <summary>
    /// The sign-out to make at a provider for <paramref name="userId"/>, signing out here now; null when they did not sign in
    /// with one that signs out too (or its entry no longer does). The cookie goes either way.
    /// </summary>
    public Target? Take(HttpContext http, string? userId)
    {
        var cookie = http.Request.Cookies[Cookie(http).Name!];
        Forget(http);
        if (string.IsNullOrEmpty(cookie) || userId is null)
        {
            return null;
        }

        Remembered? remembered;
        try
        {
            remembered = JsonSerializer.Deserialize<Remembered>(_protector.Unprotect(cookie));
        }
        catch (Exception e) when (e is CryptographicException or JsonException or FormatException)
        {
            return null;
        }

        return remembered is not null && remembered.UserId == userId && providers.Find(remembered.Provider) is { SignOutAtProvider: true }
            ? new Target(remembered.Provider, remembered.IdToken)
            : null;
    }

    /// <summary>
    /// <paramref name="next"/> (a redirect: the signed-out page, the application), by way of the provider's end-session
    /// endpoint when there is a <paramref name="target"/>.
    /// </summary>
    public static IActionResult Then(Target? target, IActionResult next) => target is null ? next : new SignOutAtProviderResult(target, next);

    /// <summary>The handler's sign-out redirect: the identity token as <c>id_token_hint</c>, else the client_id (RP-Initiated Logout 1.0 section 2).</summary>
    public static Task AttachHintAsync(RedirectContext context)
    {
        if (context.HttpContext.Items[HintItem] is string idToken)
        {
            context.ProtocolMessage.IdTokenHint = idToken;
        }
        else
        {
            // Not one the handler found elsewhere (an external cookie left over): the provider asks the person instead.
            context.ProtocolMessage.IdTokenHint = null;
            context.ProtocolMessage.ClientId = context.Options.ClientId;
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Back from the provider (<c>/signin-&lt;name&gt;/signed-out</c>): on to where the sign-out was going only for the
    /// browser that went there (<see cref="CorrelationCookieName"/>), within <see cref="ReturnWithin"/>; anything else
    /// (a replayed or missing <c>state</c>) ends on the signed-out page, so the callback redirects no one else anywhere.
    /// </summary>
    public static Task ReturnAsync(RemoteSignOutContext context)
    {
        var http = context.HttpContext;
        var held = http.Request.Cookies[CorrelationCookie(http).Name!];
        http.Response.Cookies.Delete(CorrelationCookie(http).Name!, CorrelationCookie(http).Build(http));
        var properties = context.Properties;
        var expected = properties?.Items.TryGetValue(CorrelationItem, out var value) == true ? value : null;
        var ours = expected is not null && held is not null
            && CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(expected), System.Text.Encoding.UTF8.GetBytes(held))
            && properties!.ExpiresUtc > http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        http.Response.Redirect(ours && !string.IsNullOrEmpty(properties!.RedirectUri)
            ? properties.RedirectUri
            : $"{http.Request.PathBase}{Authorization.Pages.SignedOutModel.Path}");
        context.HandleResponse();
        return Task.CompletedTask;
    }

    private static CookieBuilder CorrelationCookie(HttpContext http) =>
        http.RequestServices.GetRequiredService<ProviderSignOut>().Cookie(http, CorrelationCookieName);

    private string Protect(Remembered remembered) => _protector.Protect(JsonSerializer.Serialize(remembered));

    /// <summary>HttpOnly, SameSite=Lax (it must come back with the top-level navigations of sign-outs), <c>__Host-</c> over HTTPS.</summary>
    private CookieBuilder Cookie(HttpContext http, string name = CookieName)
    {
        var cookie = new CookieBuilder { HttpOnly = true, SameSite = SameSiteMode.Lax, IsEssential = true };
        AccountsExtensions.ConfigureCookie(cookie, name, secure: !environment.IsDevelopment());
        return cookie;
    }

    /// <summary>
    /// Runs the redirect it was given, then sends the browser to the provider's end-session endpoint instead, with that
    /// redirect as where to come back to. A provider that cannot be reached, or has no end-session endpoint, is passed
    /// by: the sign-out here is done either way.
    /// </summary>
    private sealed class SignOutAtProviderResult(Target target, IActionResult next) : IActionResult
    {
        public async Task ExecuteResultAsync(ActionContext context)
        {
            await next.ExecuteResultAsync(context);
            var http = context.HttpContext;
            var response = http.Response;
            if (Logout.FrontChannelLogout.PendingRedirect(response) is not { } location)
            {
                return;
            }

            var logger = http.RequestServices.GetRequiredService<ILogger<ProviderSignOut>>();
            if (http.RequestServices.GetRequiredService<ExternalProviders>().Find(target.Provider) is not { } provider
                || !await http.RequestServices.GetRequiredService<ExternalSignIns>().IsReachableAsync(provider, http.RequestAborted)
                || await EndSessionEndpointAsync(http, provider.Name) is null)
            {
                logger.LogWarning(AccountEvents.ProviderSignOutSkipped, "Sign-out at {Provider} skipped: it cannot be reached or has no end-session endpoint",
                    target.Provider);
                return;
            }

            response.Headers.Remove(Microsoft.Net.Http.Headers.HeaderNames.Location);
            http.Items[HintItem] = target.IdToken;
            var correlation = Microsoft.AspNetCore.WebUtilities.WebEncoders.Base64UrlEncode(RandomNumberGenerator.GetBytes(16));
            var returning = CorrelationCookie(http);
            returning.MaxAge = ReturnWithin;
            response.Cookies.Append(returning.Name!, correlation, returning.Build(http));
            var properties = new AuthenticationProperties
            {
                RedirectUri = location,
                ExpiresUtc = http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow() + ReturnWithin,
            };
            properties.Items[CorrelationItem] = correlation;
            await http.SignOutAsync(provider.Name, properties);
            logger.LogInformation(AccountEvents.ProviderSignOut, "Signing out at {Provider} too", provider.Name);
        }

        private static async Task<string?> EndSessionEndpointAsync(HttpContext http, string provider)
        {
            try
            {
                var options = http.RequestServices.GetRequiredService<IOptionsMonitor<OpenIdConnectOptions>>().Get(provider);
                var configuration = await options.ConfigurationManager!.GetConfigurationAsync(http.RequestAborted);
                return string.IsNullOrEmpty(configuration.EndSessionEndpoint) ? null : configuration.EndSessionEndpoint;
            }
            catch (Exception e) when (e is HttpRequestException or InvalidOperationException or IOException)
            {
                return null;
            }
        }
    }
}
