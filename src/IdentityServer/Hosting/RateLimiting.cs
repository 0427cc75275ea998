using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using System.Threading.RateLimiting;
using IdentityServer.Accounts;
using IdentityServer.Authorization;
using IdentityServer.Shared;
using IdentityServer.Telemetry;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.RateLimiting;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Hosting;

/// <summary>The <c>RateLimiting</c> configuration section. Each limit is a fixed window: so many requests per window.</summary>
public sealed class RateLimitingOptions
{
    public const string Section = "RateLimiting";

    public bool Enabled { get; set; } = true;

    /// <summary>Sign-in, registration, forgot-password and second-factor posts, and dynamic client registrations, from one IP address.</summary>
    public Limit PerIp { get; set; } = new() { PermitLimit = 100, Window = TimeSpan.FromMinutes(1) };

    /// <summary>The same posts naming one account, by its user name, its email or in its second-factor step alike.</summary>
    public Limit PerAccount { get; set; } = new() { PermitLimit = 20, Window = TimeSpan.FromMinutes(1) };

    /// <summary>
    /// Token requests of one client. Generous: every user of a public app (a SPA's refreshes) shares its client id,
    /// and a busy backend may ask for many client_credentials tokens; the limit is against a runaway client.
    /// </summary>
    public Limit PerClient { get; set; } = new() { PermitLimit = 60_000, Window = TimeSpan.FromMinutes(1) };

    /// <summary>
    /// Device user codes checked at the verification page (a link or form with a code, an Allow or Deny) from one IP
    /// address (RFC 8628 5.1: the short code must not be guessable by trying). A person needs two or three per device;
    /// several people behind one address (an office, a school) share it.
    /// </summary>
    public Limit UserCodesPerIp { get; set; } = new() { PermitLimit = 60, Window = TimeSpan.FromMinutes(1) };

    /// <summary>The same checks by one signed-in account, wherever it signs in from.</summary>
    public Limit UserCodesPerAccount { get; set; } = new() { PermitLimit = 10, Window = TimeSpan.FromMinutes(1) };

    public sealed class Limit
    {
        [Range(1, 1_000_000)]
        public int PermitLimit { get; set; }

        [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
        public TimeSpan Window { get; set; }
    }
}

/// <summary>
/// ASP.NET Core's rate limiter, in front of authentication (the token endpoint is answered inside OpenIddict's
/// authentication middleware, so a limiter behind it would never see token requests): account form posts per client
/// IP and per account name, token requests per client, device user-code checks per client IP and per signed-in
/// account. A refused request gets 429 with <c>Retry-After</c>: OAuth error JSON at protocol endpoints, a page elsewhere.
/// </summary>
public static class RateLimiting
{
    /// <summary>The posts that guess or spend something: passwords, codes, emails.</summary>
    private static readonly PathString[] AccountPosts =
    [
        "/account/login", "/account/register", "/account/forgot-password", "/account/reset-password", "/account/resend-confirmation",
    ];

    private static readonly PathString[] SecondFactorPosts = ["/account/login/two-factor", "/account/login/recovery-code"];

    private const string AccountKey = "IdentityServer.RateLimiting.Account";
    private const string UserCodeAccountKey = "IdentityServer.RateLimiting.UserCodeAccount";
    private const string ClientKey = "IdentityServer.RateLimiting.Client";

    /// <summary>
    /// The one partition of every name longer than an account's can be. (Names are trimmed, so no other name partition
    /// has a space after the colon.)
    /// </summary>
    private const string OverlongNamePartition = "name: longer than any account's";

    /// <summary>The length of OpenIddict's client id column: a longer client id is no client's.</summary>
    private const int ClientIdColumnLength = 100;

    private const string OverlongClientIdPartition = "client: longer than any client's";

    public static WebApplicationBuilder AddRequestRateLimits(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RateLimitingOptions>().BindConfiguration(RateLimitingOptions.Section)
            .ValidateSettings(RateLimitingOptions.Section)
            .ValidateOnStart();
        var limits = builder.Configuration.GetSection(RateLimitingOptions.Section).Get<RateLimitingOptions>() ?? new RateLimitingOptions();
        var perIp = new PerIpLimits(
            new PerIpLimit(Partitioned(limits.PerIp, context => IsAccountPost(context) || IsRegistrationPost(context) ? IpPartition(context) : null)),
            new PerIpLimit(Partitioned(limits.UserCodesPerIp, context => IsUserCodeCheck(context) ? IpPartition(context) : null)));
        builder.Services.AddSingleton(perIp);
        builder.Services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.OnRejected = RejectAsync;
            options.GlobalLimiter = PartitionedRateLimiter.CreateChained(
                perIp.AccountPosts.Limiter,
                Partitioned(limits.PerAccount, context => context.Items[AccountKey] as string),
                Partitioned(limits.PerClient, context => context.Items[ClientKey] as string),
                perIp.UserCodeChecks.Limiter,
                Partitioned(limits.UserCodesPerAccount, context => context.Items[UserCodeAccountKey] as string));
        });
        return builder;
    }

    private static string IpPartition(HttpContext context) => "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown");

    /// <summary>A per-IP limit, also asked on its own before an account is looked up.</summary>
    private sealed record PerIpLimit(PartitionedRateLimiter<HttpContext> Limiter)
    {
        /// <summary>Whether this address has used up its limit, so that a refused request costs no database lookup.</summary>
        public bool IsExhausted(HttpContext context) => Limiter.GetStatistics(context) is { CurrentAvailablePermits: <= 0 };
    }

    private sealed record PerIpLimits(PerIpLimit AccountPosts, PerIpLimit UserCodeChecks);

    /// <summary>Reads who a limited request names (the form is read asynchronously here, and kept for the page), then limits.</summary>
    public static IApplicationBuilder UseRequestRateLimits(this IApplicationBuilder app)
    {
        var enabled = app.ApplicationServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<RateLimitingOptions>>().Value.Enabled;
        if (!enabled)
        {
            return app;
        }

        var perIp = app.ApplicationServices.GetRequiredService<PerIpLimits>();

        app.Use(async (context, next) =>
        {
            if (IsAccountPost(context))
            {
                context.Items[AccountKey] = await AccountPartitionAsync(context, lookUp: !perIp.AccountPosts.IsExhausted(context));
            }
            else if (IsUserCodeCheck(context) && !perIp.UserCodeChecks.IsExhausted(context))
            {
                // The signed-in account (its cookie, validated as the authentication middleware will); a user id is short
                // and this server's own, so the partitions stay as many as the accounts.
                var session = await context.AuthenticateAsync(IdentityConstants.ApplicationScheme);
                var userIdClaim = context.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<IdentityOptions>>().Value.ClaimsIdentity.UserIdClaimType;
                context.Items[UserCodeAccountKey] = session.Principal?.FindFirstValue(userIdClaim) is { } userId ? "user:" + userId : null;
            }
            else if (HttpMethods.IsPost(context.Request.Method) && context.Request.Path.StartsWithSegments(ProtocolRoutes.Token))
            {
                context.Items[ClientKey] = await ClientIdAsync(context) switch
                {
                    null or "" => null,
                    // As for names: the limiter keeps each key for its window, so a key is never longer than a client id can be.
                    { Length: > ClientIdColumnLength } => OverlongClientIdPartition,
                    var clientId => "client:" + clientId,
                };
            }

            await next(context);
        });
        return app.UseRateLimiter();
    }

    private static bool IsAccountPost(HttpContext context) =>
        HttpMethods.IsPost(context.Request.Method) && AccountPosts.Any(p => context.Request.Path.StartsWithSegments(p, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// A request to the device verification page that checks a user code: one in the link or typed into the form (a
    /// GET), or an Allow or Deny (a POST). The empty form, and the page shown once the device is done, check none.
    /// </summary>
    private static bool IsUserCodeCheck(HttpContext context) =>
        context.Request.Path.StartsWithSegments(ProtocolRoutes.Verification, StringComparison.OrdinalIgnoreCase)
        && !context.Request.Path.StartsWithSegments(Authorization.Pages.VerifyModel.CompletedPath, StringComparison.OrdinalIgnoreCase)
        && (HttpMethods.IsPost(context.Request.Method) || !string.IsNullOrEmpty(context.Request.Query[Parameters.UserCode]));

    /// <summary>
    /// A dynamic client registration, or an update of one: anyone may send one when registration is open, so each address
    /// gets the account posts' limit.
    /// </summary>
    private static bool IsRegistrationPost(HttpContext context) =>
        (HttpMethods.IsPost(context.Request.Method) || HttpMethods.IsPut(context.Request.Method))
        && context.Request.Path.StartsWithSegments(ProtocolRoutes.Registration, StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The account a post names, so that its user name, its email and its second-factor step share one limit: the
    /// account's id when the name is one (user name first, then email, as the login page looks it up), else the name
    /// as typed (an unknown name, or a registration's new one). Not looked up when <paramref name="lookUp"/> is false
    /// (the address is over its own limit, so the request is refused anyway).
    /// </summary>
    private static async Task<string?> AccountPartitionAsync(HttpContext context, bool lookUp)
    {
        if (SecondFactorPosts.Any(p => context.Request.Path.StartsWithSegments(p, StringComparison.OrdinalIgnoreCase)))
        {
            var pending = await context.AuthenticateAsync(IdentityConstants.TwoFactorUserIdScheme);
            return pending.Principal?.FindFirstValue(ClaimTypes.Name) is { } userId ? "user:" + userId : null;
        }

        if (!context.Request.HasFormContentType)
        {
            return null;
        }

        var form = await context.Request.ReadFormAsync(context.RequestAborted);
        var name = form["Input.UserName"].ToString();
        name = (string.IsNullOrWhiteSpace(name) ? form["Input.Email"].ToString() : name).Trim();
        if (name.Length == 0)
        {
            return null;
        }

        // A name longer than any account's is no account's: not looked up, and all such names share one partition, since
        // the limiter keeps each key for its window (keyed on the name as sent, posts of huge names filled the memory).
        // (A NUL never gets here: such a form is refused first.)
        if (name.Length > ApplicationUser.NameColumnLength)
        {
            return OverlongNamePartition;
        }

        var users = context.RequestServices.GetRequiredService<UserManager<ApplicationUser>>();
        var user = lookUp ? await users.FindByNameAsync(name) ?? await users.FindByEmailAsync(name) : null;
        return user is not null ? "user:" + user.Id : "name:" + name.ToUpperInvariant();
    }

    /// <summary>The client of a token request: from HTTP Basic authentication, else the form's <c>client_id</c>.</summary>
    private static async Task<string?> ClientIdAsync(HttpContext context)
    {
        if (AuthenticationHeaderValue.TryParse(context.Request.Headers.Authorization, out var header)
            && string.Equals(header.Scheme, "Basic", StringComparison.OrdinalIgnoreCase) && header.Parameter is { } parameter)
        {
            try
            {
                var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(parameter));
                var colon = decoded.IndexOf(':', StringComparison.Ordinal);
                return Uri.UnescapeDataString(colon < 0 ? decoded : decoded[..colon]);
            }
            catch (FormatException)
            {
                return null; // OpenIddict answers the malformed header.
            }
        }

        return context.Request.HasFormContentType ? (await context.Request.ReadFormAsync(context.RequestAborted))[Parameters.ClientId].ToString() : null;
    }

    private static PartitionedRateLimiter<HttpContext> Partitioned(RateLimitingOptions.Limit limit, Func<HttpContext, string?> key) =>
        PartitionedRateLimiter.Create<HttpContext, string>(context => key(context) is { } partition
            ? RateLimitPartition.GetFixedWindowLimiter(partition, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = limit.PermitLimit,
                Window = limit.Window,
                QueueLimit = 0,
                AutoReplenishment = true,
            })
            : RateLimitPartition.GetNoLimiter(string.Empty));

    private static async ValueTask RejectAsync(OnRejectedContext rejected, CancellationToken ct)
    {
        var context = rejected.HttpContext;
        var retryAfter = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)) : 60;
        context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(RateLimiting))
            .LogWarning(HostingEvents.RateLimited, "Request {Method} {Path} refused: rate limit reached (retry after {RetryAfter} s)",
                context.Request.Method, context.Request.Path, retryAfter);
        context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
        context.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
        context.Response.Headers.CacheControl = "no-store";
        if (ProtocolRoutes.IsProtocolApi(context.Request.Path))
        {
            TokenResponseMetrics.CountAnsweredOutsideOpenIddict(context, Errors.TemporarilyUnavailable);
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(JsonSerializer.Serialize(new Dictionary<string, string>
            {
                [Parameters.Error] = Errors.TemporarilyUnavailable,
                [Parameters.ErrorDescription] = $"Too many requests; retry after {retryAfter} seconds.",
            }), ct);
            return;
        }

        context.Response.ContentType = "text/html; charset=utf-8";
        await context.Response.WriteAsync(
            Shared.HandWrittenPage.Head(context.Request, "Too many attempts - Identity Server") + "<body><header>" +
            $"<a class=\"brand\" href=\"{WebUtility.HtmlEncode(context.Request.PathBase + "/")}\">Identity Server</a></header><main>" +
            "<h1>Too many attempts</h1>" +
            $"<p>There have been too many attempts in a short time. Wait {retryAfter} seconds, then try again.</p>" +
            $"<p><a href=\"{WebUtility.HtmlEncode(context.Request.PathBase + context.Request.Path)}\">Back</a></p></main></body></html>", ct);
    }
}
