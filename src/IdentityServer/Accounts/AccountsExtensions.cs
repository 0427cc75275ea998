using IdentityServer.Accounts.Email;
using IdentityServer.Accounts.External;
using IdentityServer.Data;
using IdentityServer.Shared;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Identity;
using static IdentityServer.Authorization.PromptCreate;

namespace IdentityServer.Accounts;

public static class AccountsExtensions
{
    public const string LoginPath = "/account/login";
    public const string LogoutPath = "/account/logout";
    public const string AccessDeniedPath = "/account/access-denied";

    /// <summary>
    /// ASP.NET Core Identity on EF Core (with passkeys: Identity schema version 3), the short cookie session of our
    /// own pages, password and lockout policy from configuration, account emails, and the self-service pages' services.
    /// </summary>
    public static WebApplicationBuilder AddAccounts(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AccountsOptions>().BindConfiguration(AccountsOptions.Section).ValidateSettings(AccountsOptions.Section)
            .ValidateOnStart();
        var accounts = builder.Configuration.GetSection(AccountsOptions.Section).Get<AccountsOptions>() ?? new AccountsOptions();
        CheckPublicOrigin(accounts.PublicOrigin);
        CheckPasskeyServerDomain(accounts.Passkeys.ServerDomain);
        var secureCookies = !builder.Environment.IsDevelopment();

        builder.Services.AddIdentity<ApplicationUser, IdentityRole>(options =>
            {
                options.Stores.SchemaVersion = IdentitySchemaVersions.Version3;
                options.Lockout.AllowedForNewUsers = true;
                options.Lockout.MaxFailedAccessAttempts = accounts.Lockout.MaxFailedAttempts;
                options.Lockout.DefaultLockoutTimeSpan = accounts.Lockout.Duration;
                options.Password.RequiredLength = accounts.Password.RequiredLength;
                options.Password.RequireDigit = accounts.Password.RequireDigit;
                options.Password.RequireLowercase = accounts.Password.RequireLowercase;
                options.Password.RequireUppercase = accounts.Password.RequireUppercase;
                options.Password.RequireNonAlphanumeric = accounts.Password.RequireNonAlphanumeric;
                options.Password.RequiredUniqueChars = accounts.Password.RequiredUniqueChars;
                // Optional, but unique when given: see OptionalUniqueEmailValidator.
                options.User.RequireUniqueEmail = false;
                options.SignIn.RequireConfirmedEmail = accounts.EmailConfirmationRequired(builder.Environment);
            })
            .AddEntityFrameworkStores<ApplicationDbContext>()
            .AddUserStore<ApplicationUserStore>()
            .AddSignInManager<ServerSignInManager>()
            .AddDefaultTokenProviders()
            // In place of Identity's authenticator provider (same name): each code is accepted once.
            .AddTokenProvider<OneUseAuthenticatorCodes>(TokenOptions.DefaultAuthenticatorProvider)
            .AddPasswordValidator<PasswordNotPersonalValidator>()
            .AddUserValidator<OptionalUniqueEmailValidator>();
        builder.Services.AddSingleton<UsedPasskeyChallenges>();
        builder.Services.AddScoped<IPasskeyHandler<ApplicationUser>, SingleUsePasskeyHandler>();

        if (accounts.AllowRegistration)
        {
            // An app's sign-up button (prompt=create) reaches the registration page only while there is one to reach.
            builder.Services.AddOpenIddict().AddServer(server => server.AllowPromptCreate());
        }

        // Email confirmation, password reset and email change links: single use (bound to the security stamp or
        // the address) and short-lived.
        builder.Services.Configure<DataProtectionTokenProviderOptions>(o => o.TokenLifespan = accounts.EmailLinkLifetime);
        builder.Services.Configure<IdentityPasskeyOptions>(o =>
        {
            o.ServerDomain = accounts.Passkeys.ServerDomain;
            o.UserVerificationRequirement = "required";
            o.ResidentKeyRequirement = "required";
            // The origin the authenticator signed must be this server's own (as the request reached it, or the public
            // origin). Identity's default compares it with the request's Origin header, which browsers send as "null"
            // under our Referrer-Policy: no-referrer.
            o.ValidateOrigin = context =>
            {
                if (context.CrossOrigin || !Uri.TryCreate(context.Origin, UriKind.Absolute, out var origin))
                {
                    return ValueTask.FromResult(false);
                }

                var request = context.HttpContext.Request;
                var own = new Uri($"{request.Scheme}://{request.Host}");
                var configured = accounts.PublicOrigin is { } publicOrigin ? new Uri(publicOrigin.GetLeftPart(UriPartial.Authority)) : null;
                return ValueTask.FromResult(own.Equals(origin) || (configured is not null && configured.Equals(origin)));
            };
        });

        builder.Services.ConfigureApplicationCookie(cookie =>
        {
            ConfigureCookie(cookie.Cookie, "idsrv.session", secureCookies);
            cookie.Cookie.HttpOnly = true;
            cookie.Cookie.SameSite = SameSiteMode.Lax;
            cookie.ExpireTimeSpan = accounts.SessionIdleTimeout;
            cookie.SlidingExpiration = true;
            cookie.LoginPath = LoginPath;
            cookie.LogoutPath = LogoutPath;
            cookie.AccessDeniedPath = AccessDeniedPath;
            cookie.Events.OnValidatePrincipal = SessionUser.RefuseEndedSessionsAsync;
            cookie.Events.OnCheckSlidingExpiration = SessionUser.NoteSlidingRenewal;
        });
        builder.Services.Configure<CookieAuthenticationOptions>(IdentityConstants.TwoFactorUserIdScheme, cookie =>
        {
            ConfigureCookie(cookie.Cookie, "idsrv.2fa", secureCookies);
        });
        builder.Services.Configure<CookieAuthenticationOptions>(IdentityConstants.TwoFactorRememberMeScheme, cookie =>
        {
            ConfigureCookie(cookie.Cookie, "idsrv.device", secureCookies);
            cookie.ExpireTimeSpan = accounts.RememberDeviceFor;
        });
        builder.Services.Configure<CookieAuthenticationOptions>(IdentityConstants.ExternalScheme, cookie =>
        {
            ConfigureCookie(cookie.Cookie, "idsrv.external", secureCookies);
        });
        // TempData (notices, and the front-channel frames handed to the sign-out page) rides in a cookie of its own.
        builder.Services.Configure<Microsoft.AspNetCore.Mvc.CookieTempDataProviderOptions>(tempData => ConfigureCookie(tempData.Cookie, "idsrv.tempdata", secureCookies));
        builder.Services.AddAntiforgery(antiforgery =>
        {
            ConfigureCookie(antiforgery.Cookie, "idsrv.af", secureCookies);
            // Scripts (passkeys, the admin API with the session cookie) send the token in this header.
            antiforgery.HeaderName = "RequestVerificationToken";
        });

        builder.Services.Configure<SecurityStampValidatorOptions>(options =>
        {
            // How often a session's claims (name, roles) are renewed from the account. Ended sessions are refused at
            // once whatever this says (SessionUser).
            options.ValidationInterval = accounts.SessionValidationInterval;

            // A re-validated session keeps when and how the user signed in.
            options.OnRefreshingPrincipal = context =>
            {
                var kept = context.CurrentPrincipal?.Claims.Where(SessionClaims.IsSessionClaim).ToList() ?? [];
                if (kept.Count > 0 && context.NewPrincipal?.Identity is System.Security.Claims.ClaimsIdentity identity)
                {
                    foreach (var claim in identity.FindAll(SessionClaims.IsSessionClaim).ToList())
                    {
                        identity.RemoveClaim(claim);
                    }

                    identity.AddClaims(kept.Select(c => new System.Security.Claims.Claim(c.Type, c.Value, c.ValueType)));
                }

                return Task.CompletedTask;
            };
        });

        builder.Services.AddScoped<AccountSessions>();
        builder.Services.AddScoped<UserSessions>();
        builder.Services.AddScoped<SecurityStamps>();
        builder.Services.AddScoped<ConnectedApps>();
        builder.Services.AddSingleton<LoginHints>();
        builder.AddAccountEmail();
        builder.AddExternalProviders();
        return builder;
    }

    /// <summary>
    /// Our cookies' name and security: where cookies are always secure (not in Development, which runs on plain
    /// http://localhost), only over HTTPS and with the <c>__Host-</c> prefix (for this host only), which needs the path
    /// "/": set here, as ASP.NET Core's default path is the request's PathBase (<c>Hosting:PathBase</c>).
    /// </summary>
    internal static void ConfigureCookie(CookieBuilder cookie, string name, bool secure)
    {
        cookie.Name = secure ? "__Host-" + name : name;
        cookie.SecurePolicy = secure ? CookieSecurePolicy.Always : CookieSecurePolicy.SameAsRequest;
        cookie.Path = "/";
    }

    /// <summary>
    /// The public origin is an origin: an http or https scheme, a host and a port. A relative value (the scheme
    /// forgotten) made every emailed link a 500, and a path, query or fragment was taken into links as a base address
    /// (or dropped), though the pages are under <c>Hosting:PathBase</c> and redirects and passkeys use the origin only.
    /// </summary>
    private static void CheckPublicOrigin(Uri? origin)
    {
        if (origin is not null && !Shared.AbsoluteUris.IsHttpUrl(origin, originOnly: true))
        {
            throw new Hosting.StartupConfigurationException(
                $"Accounts:PublicOrigin: '{origin.OriginalString}' is not an origin, an http or https URL without path, query or fragment " +
                "(such as https://id.example.com); a path the server is published under goes in Hosting:PathBase.");
        }
    }

    /// <summary>
    /// The WebAuthn relying party id is a domain name (WebAuthn section 5.1.2): a URL there (the issuer copied in, say) was
    /// sent to browsers as it was, and every passkey sign-in and registration then failed in the browser.
    /// </summary>
    private static void CheckPasskeyServerDomain(string? domain)
    {
        if (domain is not null && Uri.CheckHostName(domain) != UriHostNameType.Dns)
        {
            throw new Hosting.StartupConfigurationException(
                $"Accounts:Passkeys:ServerDomain: '{domain}' is not a domain name (such as id.example.com: no scheme, port or path, not an IP address).");
        }
    }
}

public static class AccountEvents
{
    public static readonly EventId SignedIn = new(2001, nameof(SignedIn));
    public static readonly EventId SignInFailed = new(2002, nameof(SignInFailed));
    public static readonly EventId LockedOut = new(2003, nameof(LockedOut));
    public static readonly EventId SignedOut = new(2004, nameof(SignedOut));
    public static readonly EventId Registered = new(2005, nameof(Registered));
    public static readonly EventId EmailConfirmed = new(2006, nameof(EmailConfirmed));
    public static readonly EventId PasswordResetRequested = new(2007, nameof(PasswordResetRequested));
    public static readonly EventId PasswordReset = new(2008, nameof(PasswordReset));
    public static readonly EventId PasswordChanged = new(2009, nameof(PasswordChanged));
    public static readonly EventId EmailChanged = new(2010, nameof(EmailChanged));
    public static readonly EventId TwoFactorEnabled = new(2011, nameof(TwoFactorEnabled));
    public static readonly EventId TwoFactorDisabled = new(2012, nameof(TwoFactorDisabled));
    public static readonly EventId RecoveryCodeUsed = new(2013, nameof(RecoveryCodeUsed));
    public static readonly EventId RecoveryCodesGenerated = new(2014, nameof(RecoveryCodesGenerated));
    public static readonly EventId PasskeyAdded = new(2015, nameof(PasskeyAdded));
    public static readonly EventId PasskeyRemoved = new(2016, nameof(PasskeyRemoved));
    public static readonly EventId ConsentRevoked = new(2017, nameof(ConsentRevoked));
    public static readonly EventId SignedOutEverywhere = new(2018, nameof(SignedOutEverywhere));
    public static readonly EventId EmailSent = new(2019, nameof(EmailSent));
    public static readonly EventId EmailFailed = new(2020, nameof(EmailFailed));
    public static readonly EventId ProfileUpdated = new(2021, nameof(ProfileUpdated));
    public static readonly EventId RegistrationRefused = new(2022, nameof(RegistrationRefused));
    public static readonly EventId EmailChangeRequested = new(2023, nameof(EmailChangeRequested));
    public static readonly EventId PasskeyRenamed = new(2024, nameof(PasskeyRenamed));
    public static readonly EventId EndedSessionRefused = new(2025, nameof(EndedSessionRefused));
    public static readonly EventId PersonalDataDownloaded = new(2026, nameof(PersonalDataDownloaded));
    public static readonly EventId AccountDeleted = new(2027, nameof(AccountDeleted));
    public static readonly EventId AccountDeletionRefused = new(2028, nameof(AccountDeletionRefused));
    public static readonly EventId ExternalSignInFailed = new(2029, nameof(ExternalSignInFailed));
    public static readonly EventId ExternalLoginAdded = new(2030, nameof(ExternalLoginAdded));
    public static readonly EventId ExternalLoginRemoved = new(2031, nameof(ExternalLoginRemoved));
    public static readonly EventId ProviderSignOut = new(2032, nameof(ProviderSignOut));
    public static readonly EventId ProviderSignOutSkipped = new(2033, nameof(ProviderSignOutSkipped));
}
