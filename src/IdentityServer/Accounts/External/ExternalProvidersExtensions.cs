using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using System.Security.Claims;

namespace IdentityServer.Accounts.External;

/// <summary>The configured external providers, in name order, for the pages.</summary>
public sealed class ExternalProviders(IReadOnlyDictionary<string, ExternalProviderOptions> providers)
{
    public IReadOnlyList<ExternalProvider> All { get; } =
        [.. providers.Select(p => new ExternalProvider(p.Key, p.Value.DisplayName ?? p.Key, p.Value.CreateAccounts))];

    public ExternalProvider? Find(string? name) => All.FirstOrDefault(p => p.Name == name);
}

/// <summary>
/// A provider people may sign in with: <see cref="Name"/> is its authentication scheme and what accounts record
/// (<c>AspNetUserLogins.LoginProvider</c>).
/// </summary>
public sealed record ExternalProvider(string Name, string DisplayName, bool? CreateAccounts);

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
        if (providers.Count == 0)
        {
            return builder;
        }

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
                options.SaveTokens = false;
                options.DisableTelemetry = true;
                ConfigureCookie(options.CorrelationCookie, "idsrv.correlation.", secureCookies);
                ConfigureCookie(options.NonceCookie, "idsrv.nonce.", secureCookies);
                options.Events.OnTokenValidated = context =>
                {
                    // Identity finds the provider's key for the person under NameIdentifier.
                    if (context.Principal?.Identity is ClaimsIdentity identity && identity.FindFirst("sub") is { } subject)
                    {
                        identity.AddClaim(new Claim(ClaimTypes.NameIdentifier, subject.Value));
                    }

                    return Task.CompletedTask;
                };
                options.Events.OnRemoteFailure = ReportRemoteFailureAsync;
            });
        }

        return builder;
    }

    /// <summary>
    /// The provider answered an error (the person declined, say), or its answer could not be checked (a replayed or
    /// forged callback, a bad identity token): logged, and the person is taken back to the page that started it with
    /// <c>failed=true</c>, never shown an exception.
    /// </summary>
    private static Task ReportRemoteFailureAsync(RemoteFailureContext context)
    {
        context.HttpContext.RequestServices.GetRequiredService<ILogger<ExternalSignIns>>().LogWarning(AccountEvents.ExternalSignInFailed,
            "Sign-in with {Provider} failed at its callback: {Reason}", context.Scheme.Name, context.Failure?.Message);
        // The page to go back to came from the state we sent, which is protected: only our own pages are there.
        var started = context.Properties?.RedirectUri;
        var target = started is not null && started.StartsWith('/') && !started.StartsWith("//", StringComparison.Ordinal)
            && !started.StartsWith("/\\", StringComparison.Ordinal)
            ? QueryHelpers.AddQueryString(started, "failed", "true")
            : $"{context.Request.PathBase}{AccountsExtensions.LoginPath}";
        context.Response.Redirect(target);
        context.HandleResponse();
        return Task.CompletedTask;
    }

    private static void ConfigureCookie(CookieBuilder cookie, string name, bool secure)
    {
        AccountsExtensions.ConfigureCookie(cookie, name, secure);
        cookie.SameSite = SameSiteMode.Lax;
        cookie.HttpOnly = true;
    }
}
