using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

public static class AccountsExtensions
{
    public const string LoginPath = "/account/login";
    public const string LogoutPath = "/account/logout";
    public const string AccessDeniedPath = "/account/access-denied";

    /// <summary>ASP.NET Core Identity on EF Core, and the short cookie session of our own pages.</summary>
    public static WebApplicationBuilder AddAccounts(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AccountsOptions>().BindConfiguration(AccountsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var accounts = builder.Configuration.GetSection(AccountsOptions.Section).Get<AccountsOptions>() ?? new AccountsOptions();

        builder.Services.AddIdentity<ApplicationUser, IdentityRole>(options =>
            {
                options.Lockout.AllowedForNewUsers = true;
                options.Lockout.MaxFailedAccessAttempts = 5;
                options.Lockout.DefaultLockoutTimeSpan = TimeSpan.FromMinutes(15);
                options.Password.RequiredLength = 10;
                options.Password.RequireDigit = false;
                options.Password.RequireLowercase = false;
                options.Password.RequireUppercase = false;
                options.Password.RequireNonAlphanumeric = false;
                options.User.RequireUniqueEmail = false;
            })
            .AddEntityFrameworkStores<ApplicationDbContext>()
            .AddDefaultTokenProviders();

        builder.Services.ConfigureApplicationCookie(cookie =>
        {
            cookie.Cookie.Name = "idsrv.session";
            cookie.Cookie.HttpOnly = true;
            cookie.Cookie.SameSite = SameSiteMode.Lax;
            cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            cookie.ExpireTimeSpan = accounts.SessionIdleTimeout;
            cookie.SlidingExpiration = true;
            cookie.LoginPath = LoginPath;
            cookie.LogoutPath = LogoutPath;
            cookie.AccessDeniedPath = AccessDeniedPath;
        });

        builder.Services.Configure<SecurityStampValidatorOptions>(options =>
            // A re-validated session keeps when and how the user signed in.
            options.OnRefreshingPrincipal = context =>
            {
                var kept = context.CurrentPrincipal?.Claims
                    .Where(c => c.Type is SessionClaims.AuthenticationTime or SessionClaims.AuthenticationMethod).ToList() ?? [];
                if (kept.Count > 0 && context.NewPrincipal?.Identity is System.Security.Claims.ClaimsIdentity identity)
                {
                    foreach (var claim in identity.FindAll(c => c.Type is SessionClaims.AuthenticationTime or SessionClaims.AuthenticationMethod).ToList())
                    {
                        identity.RemoveClaim(claim);
                    }

                    identity.AddClaims(kept.Select(c => new System.Security.Claims.Claim(c.Type, c.Value, c.ValueType)));
                }

                return Task.CompletedTask;
            });

        return builder;
    }
}

public static class AccountEvents
{
    public static readonly EventId SignedIn = new(2001, nameof(SignedIn));
    public static readonly EventId SignInFailed = new(2002, nameof(SignInFailed));
    public static readonly EventId LockedOut = new(2003, nameof(LockedOut));
    public static readonly EventId SignedOut = new(2004, nameof(SignedOut));
}
