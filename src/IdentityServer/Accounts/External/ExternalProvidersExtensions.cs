using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Claims;

namespace IdentityServer.Accounts.External;

/// <summary>The configured external providers, in name order, for the pages.</summary>
public sealed class ExternalProviders(IReadOnlyDictionary<string, ExternalProviderOptions> providers)
{
    public IReadOnlyList<ExternalProvider> All { get; } =
        [.. providers.Select(p => new ExternalProvider(p.Key, p.Value.DisplayName ?? p.Key, p.Value.CreateAccounts, p.Value.TrustEmail, p.Value.SignOutAtProvider))];

    public ExternalProvider? Find(string? name) => All.FirstOrDefault(p => p.Name == name);

    /// <summary>Providers whose discovery document could not be read lately, until when they are not tried again.</summary>
    internal ConcurrentDictionary<string, DateTimeOffset> UnreachableUntil { get; } = new(StringComparer.Ordinal);
}

/// <summary>
/// A provider people may sign in with: <see cref="Name"/> is its authentication scheme and what accounts record
/// (<c>AspNetUserLogins.LoginProvider</c>).
/// </summary>
public sealed record ExternalProvider(string Name, string DisplayName, bool? CreateAccounts, bool TrustEmail, bool SignOutAtProvider = false);

public static class ExternalProvidersExtensions
{
    /// <summary>
    /// One OpenID Connect handler per <c>ExternalProviders</c> entry: authorization code with PKCE, the answer in the
    /// query of <c>/signin-{name}</c>, the identity token checked against the provider's discovery document and keys.
    /// The handler signs in to Identity's external cookie only; <see cref="ExternalSignIns"/> turns that into an
    /// account and a session. Nothing is registered (nor loaded) when the section is empty.
    /// </summary>
    public static WebApplicationBuilder AddExternalProviders(this WebApplicationBuilder builder)
    {
        var providers = ExternalProviderOptions.Read(builder.Configuration);
        builder.Services.AddSingleton(new ExternalProviders(providers));
        builder.Services.AddScoped<ExternalSignIns>();
        builder.Services.AddSingleton<ProviderSignOut>();
        if (providers.Count > 0)
        {
            AddHandlers(builder, providers);
        }

        return builder;
    }

    /// <summary>A method of its own, so that the OpenID Connect handler's assembly is not even loaded without providers.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AddHandlers(WebApplicationBuilder builder, IReadOnlyDictionary<string, ExternalProviderOptions> providers)
    {
        var secureCookies = !builder.Environment.IsDevelopment();
        var authentication = builder.Services.AddAuthentication();
        foreach (var (name, provider) in providers)
        {
            authentication.AddOpenIdConnect(name, provider.DisplayName ?? name, options =>
            {
                options.SignInScheme = IdentityConstants.ExternalScheme;
                options.Authority = provider.Authority!.AbsoluteUri;
                options.RequireHttpsMetadata = provider.Authority.Scheme == Uri.UriSchemeHttps;
                options.ClientId = provider.ClientId;
                options.ClientSecret = provider.ClientSecret;
                options.ResponseType = OpenIdConnectResponseType.Code;
                // A top-level GET back to us: the correlation and nonce cookies can be SameSite=Lax (form_post needs None).
                options.ResponseMode = OpenIdConnectResponseMode.Query;
                options.UsePkce = true;
                options.CallbackPath = $"/signin-{name}";
                options.Scope.Clear();
                foreach (var scope in provider.Scope.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    options.Scope.Add(scope);
                }

                // The provider's claims as it named them (sub, email, email_verified, preferred_username).
                options.MapInboundClaims = false;
                // Only the identity token of a provider this server signs out at too, for its id_token_hint (ProviderSignOut).
                options.SaveTokens = provider.SignOutAtProvider;
                options.DisableTelemetry = true;
                // A person waits on these calls (discovery, keys, the token request): not the default minute.
                options.BackchannelTimeout = TimeSpan.FromSeconds(10);
                ConfigureCookie(options.CorrelationCookie, "idsrv.correlation.", secureCookies);
                ConfigureCookie(options.NonceCookie, "idsrv.nonce.", secureCookies);
                if (provider.UseUserInfo)
                {
                    options.GetClaimsFromUserInfoEndpoint = true;
                    options.ClaimActions.MapUniqueJsonKey("email_verified", "email_verified");
                    options.ClaimActions.MapUniqueJsonKey("preferred_username", "preferred_username");
                }

                options.Events.OnRedirectToIdentityProvider = AskForAuthenticationTimeAsync;
                options.Events.OnTokenValidated = CheckSignInAsync;
                options.Events.OnRemoteFailure = ReportRemoteFailureAsync;
                // The provider's sign-out comes back to SignedOutCallbackPath (ProviderSignOut). The handler's front-channel
                // sign-out from the provider only clears its external cookie; it is under the callback's path all the same.
                options.RemoteSignOutPath = $"/signin-{name}/signout";
                options.SignedOutCallbackPath = $"/signin-{name}/signed-out";
                options.Events.OnRedirectToIdentityProviderForSignOut = ProviderSignOut.AttachHintAsync;
                options.Events.OnSignedOutCallbackRedirect = ProviderSignOut.ReturnAsync;
            });
        }
    }

    /// <summary>
    /// Every sign-in asks for <c>max_age</c>, which makes the provider say when the person signed in (<c>auth_time</c>,
    /// OpenID Connect Core 3.1.2.1): that time, not ours, says how recent the sign-in is. A sign-in that must be fresh
    /// (<see cref="ExternalSignIns.FreshSignInSince"/>: the person is signing in again, to prove it is still them) asks
    /// <c>max_age=0</c>, the same as <c>prompt=login</c> (which some providers refuse); any other allows the provider's
    /// session up to the application's <c>max_age</c>, or <see cref="LongestProviderSession"/>.
    /// </summary>
    private static Task AskForAuthenticationTimeAsync(RedirectContext context)
    {
        var items = context.Properties.Items;
        var longest = (long)LongestProviderSession.TotalSeconds;
        var maxAge = items.ContainsKey(ExternalSignIns.FreshSignInSince) ? 0
            : items.TryGetValue(ExternalSignIns.MaxAgeItem, out var asked) && long.TryParse(asked, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
                ? Math.Min(seconds, longest)
                : longest;
        context.ProtocolMessage.MaxAge = maxAge.ToString(CultureInfo.InvariantCulture);
        return Task.CompletedTask;
    }

    private static readonly TimeSpan LongestProviderSession = TimeSpan.FromDays(30);

    /// <summary>
    /// The identity token checked out. Identity finds the provider's key for the person under NameIdentifier. The
    /// provider must say when the person signed in (<c>auth_time</c>; required, as <c>max_age</c> was sent), and for a
    /// fresh sign-in after it was asked for (a minute allowed for clocks).
    /// </summary>
    private static Task CheckSignInAsync(TokenValidatedContext context)
    {
        if (context.Principal?.Identity is not ClaimsIdentity identity || identity.FindFirst("sub") is not { } subject)
        {
            GoBackFailed(context, context.Properties, "the identity token has no sub");
            return Task.CompletedTask;
        }

        if (SessionClaims.GetAuthenticationTime(context.Principal) is not { } signedIn)
        {
            GoBackFailed(context, context.Properties, "the identity token has no auth_time");
            return Task.CompletedTask;
        }

        if (context.Properties?.Items.TryGetValue(ExternalSignIns.FreshSignInSince, out var asked) == true
            && !(long.TryParse(asked, NumberStyles.Integer, CultureInfo.InvariantCulture, out var since)
                && signedIn.ToUnixTimeSeconds() >= since - 60))
        {
            GoBackFailed(context, context.Properties, "a fresh sign-in was asked for, and the provider's auth_time is older");
            return Task.CompletedTask;
        }

        identity.AddClaim(new Claim(ClaimTypes.NameIdentifier, subject.Value, subject.ValueType, subject.Issuer));
        return Task.CompletedTask;
    }

    /// <summary>
    /// The provider answered an error (the person declined, say), or its answer could not be checked (a replayed or
    /// forged callback, a bad identity token).
    /// </summary>
    private static Task ReportRemoteFailureAsync(RemoteFailureContext context)
    {
        GoBackFailed(context, context.Properties, context.Failure?.Message);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Logged, and the person is taken back to the page that started the sign-in with <c>failed=true</c> (else to the
    /// callback page, which says it did not work), never shown an exception. Nobody is signed in.
    /// </summary>
    private static void GoBackFailed<TOptions>(HandleRequestContext<TOptions> context, AuthenticationProperties? properties, string? reason)
        where TOptions : AuthenticationSchemeOptions
    {
        context.HttpContext.RequestServices.GetRequiredService<ILogger<ExternalSignIns>>().LogWarning(AccountEvents.ExternalSignInFailed,
            "Sign-in with {Provider} failed at its callback: {Reason}", context.Scheme.Name, reason);
        // The page to go back to came from the state we sent, which is protected: only our own pages are there.
        var started = properties?.RedirectUri;
        var target = started is not null && started.StartsWith('/') && !started.StartsWith("//", StringComparison.Ordinal)
            && !started.StartsWith("/\\", StringComparison.Ordinal)
            ? started
            : $"{context.Request.PathBase}/account/external-login";
        context.Response.Redirect(QueryHelpers.AddQueryString(target, "failed", "true"));
        context.HandleResponse();
    }

    private static void ConfigureCookie(CookieBuilder cookie, string name, bool secure)
    {
        AccountsExtensions.ConfigureCookie(cookie, name, secure);
        cookie.SameSite = SameSiteMode.Lax;
        cookie.HttpOnly = true;
    }
}
