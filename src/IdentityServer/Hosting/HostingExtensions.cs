using System.Data.Common;
using System.Net;
using System.Text.Json;
using IdentityServer.Authorization;
using IdentityServer.Data;
using IdentityServer.Performance;
using IdentityServer.Shared;
using IdentityServer.Telemetry;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Cors.Infrastructure;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Hosting;

public static class HostingExtensions
{
    /// <summary>
    /// Configuration, Razor Pages (deny by default), health checks, CORS and forwarded headers: everything
    /// about how the server is hosted rather than what it does.
    /// </summary>
    public static WebApplicationBuilder AddHosting(this WebApplicationBuilder builder)
    {
        builder.AddRepositoryDevelopmentSettings();
        builder.Services.AddOptions<HostingOptions>().BindConfiguration(HostingOptions.Section).ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<IPostConfigureOptions<LoggerFilterOptions>, TokenFreeLogging>();
        // No "Server: Kestrel" on every response: nothing a client needs, and it tells a scanner what to look for.
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);

        builder.Services.AddRazorPages(options =>
        {
            // Pages live beside their feature (Accounts/, Authorization/, ...) with absolute routes.
            options.RootDirectory = "/";
        }).AddMvcOptions(options => options.Filters.Add<UnhandledMethods>());
        builder.Services.AddAuthorization(options =>
            options.FallbackPolicy = new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());

        builder.Services.AddHealthChecks().AddDbContextCheck<ApplicationDbContext>("database", tags: ["ready"]);
        builder.Services.AddCors();
        builder.Services.AddSingleton<ICorsPolicyProvider, ClientCorsPolicyProvider>();
        builder.AddFormLimits();
        builder.AddRequestRateLimits();

        var hosting = builder.Configuration.GetSection(HostingOptions.Section).Get<HostingOptions>() ?? new HostingOptions();
        // Checked whether or not the proxy mode is on, so that a typo is found before the day it is turned on.
        var proxies = ParseEach<IPAddress>(hosting.KnownProxies, "Hosting:KnownProxies", "an IP address", IPAddress.TryParse);
        var networks = ParseEach<System.Net.IPNetwork>(hosting.KnownNetworks, "Hosting:KnownNetworks", "a network in CIDR notation (such as 10.0.0.0/8)",
            System.Net.IPNetwork.TryParse);
        CheckPathBase(hosting.PathBase, builder.Configuration["Tokens:Issuer"]);
        if (hosting.TlsTerminatedByProxy)
        {
            builder.Services.Configure<ForwardedHeadersOptions>(options =>
            {
                options.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
                // ASP.NET Core trusts only loopback by default; here exactly what is configured (or, with nothing, anyone).
                options.KnownIPNetworks.Clear();
                options.KnownProxies.Clear();
                proxies.ForEach(options.KnownProxies.Add);
                networks.ForEach(options.KnownIPNetworks.Add);
            });
        }

        return builder;
    }

    /// <summary>
    /// A path base is one or more segments of unreserved characters, and the issuer, when both are set, is under it:
    /// OpenIddict puts its endpoints under the issuer, so with another path every protocol request would miss them.
    /// </summary>
    private static void CheckPathBase(string pathBase, string? issuer)
    {
        if (pathBase.Length > 0 && !System.Text.RegularExpressions.Regex.IsMatch(pathBase, "^(/[A-Za-z0-9._~-]+)+$"))
        {
            throw new StartupConfigurationException(
                $"Hosting:PathBase: '{pathBase}' is not a path such as /identity (a leading slash, no trailing one, letters, digits and . _ ~ - only).");
        }

        // Only with a path base: without one, an issuer with a path (behind a proxy that strips it) is the operator's to set.
        if (pathBase.Length > 0 && !string.IsNullOrWhiteSpace(issuer) && Uri.TryCreate(issuer.Trim(), UriKind.Absolute, out var issuerUri)
            && !string.Equals(issuerUri.AbsolutePath.TrimEnd('/'), pathBase, StringComparison.Ordinal))
        {
            throw new StartupConfigurationException(
                $"Tokens:Issuer: '{issuer}' is not under Hosting:PathBase ('{pathBase}'): its path must be the path base, such as https://example.com{pathBase}/.");
        }
    }

    private delegate bool TryParse<T>(string? text, out T? value);

    private static List<T> ParseEach<T>(string[] texts, string setting, string expected, TryParse<T> tryParse) =>
        [.. texts.Select((text, index) => tryParse(text.Trim(), out var value)
            ? value!
            : throw new StartupConfigurationException($"{setting}:{index}: '{text}' is not {expected}."))];

    /// <summary>
    /// In Development, the repository's top-level <c>appsettings.Development.json</c> (copied next to the binaries
    /// at build) is read after the project's own settings, so environment variables and arguments still win.
    /// </summary>
    private static void AddRepositoryDevelopmentSettings(this WebApplicationBuilder builder)
    {
        if (!builder.Environment.IsDevelopment())
        {
            return;
        }

        var path = Path.Combine(AppContext.BaseDirectory, "appsettings.Development.json");
        var sources = builder.Configuration.Sources;
        var index = sources.ToList().FindLastIndex(s => s is Microsoft.Extensions.Configuration.Json.JsonConfigurationSource);
        var source = new Microsoft.Extensions.Configuration.Json.JsonConfigurationSource
        {
            Path = path,
            Optional = true,
            ReloadOnChange = false,
        };
        source.ResolveFileProvider();
        sources.Insert(index + 1, source);
    }

    public static WebApplication UseHosting(this WebApplication app)
    {
        var hosting = app.Services.GetRequiredService<IOptions<HostingOptions>>().Value;
        if (hosting.PathBase.Length > 0)
        {
            app.UsePathBase(hosting.PathBase);
            var metricsListenerPort = TelemetryExtensions.MetricsListenerPort(app.Configuration);
            app.Use((context, next) =>
            {
                // Only under the path base, spelled as configured (UsePathBase matches any case): elsewhere the server would
                // name other endpoint addresses, and another issuer. But health probes (Docker, Kubernetes) may come to
                // the root, and the metrics listener (a port of its own) answers /metrics at its root.
                if (string.Equals(context.Request.PathBase.Value, hosting.PathBase, StringComparison.Ordinal)
                    || context.Request.Path.StartsWithSegments("/health")
                    || context.Connection.LocalPort == metricsListenerPort)
                {
                    return next(context);
                }

                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            });
        }

        app.UseMetricsListener();
        app.UseEndpointMetrics();
        if (hosting.TlsTerminatedByProxy)
        {
            app.UseForwardedHeaders();
        }

        var publicAddress = app.Services.GetRequiredService<IOptions<Accounts.AccountsOptions>>().Value
            .ConfiguredPublicAddress(app.Services.GetRequiredService<IOptions<Authorization.TokenOptions>>().Value);
        if (!app.Environment.IsDevelopment() && publicAddress is null)
        {
            app.Logger.LogWarning(HostingEvents.LinksFromHostHeader,
                "Neither Accounts:PublicOrigin nor Tokens:Issuer is set: links in emails (password reset, confirmation) take the " +
                "address from each request's Host header, so a forged Host can send a user a link to another site. Set one of them.");
        }

        if (hosting.TrustsAnySender)
        {
            app.Logger.LogWarning(HostingEvents.ForwardedHeadersFromAnySender,
                "Hosting:TlsTerminatedByProxy is set without Hosting:KnownProxies or Hosting:KnownNetworks: X-Forwarded-For and " +
                "X-Forwarded-Proto are trusted from any sender, so whoever reaches the server without the proxy chooses the " +
                "client address that rate limits and logs see. Set the proxy's address or network.");
        }

        // Never a stack trace to a client, in Development too: protocol endpoints answer OAuth error JSON,
        // pages the friendly error page with a request id; the details go to the log.
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = HandleExceptionAsync,
            // The client's mistakes and lost races are logged by HandleExceptionAsync as warnings; the framework would
            // also log each as an unhandled-exception error.
            SuppressDiagnosticsCallback = context => Classify(context.Exception) is Failure.Malformed or Failure.OwnerDeleted,
        });
        app.UseWhen(context => !ProtocolRoutes.IsProtocolApi(context.Request.Path) && !context.Request.Path.StartsWithSegments("/api"),
            pages => pages.UseStatusCodePagesWithReExecute("/error", "?status={0}"));

        if (!app.Environment.IsDevelopment())
        {
            app.UseHsts();
        }

        app.UseSecurityHeaders();
        app.UseHostHeaderValidation(); // after the security headers, so its 400s carry them too
        if (!app.Environment.IsDevelopment())
        {
            app.UseHttpsOnlyPages(publicAddress); // after the security headers, so its answers carry them too
        }

        app.UseFormBodyValidation(); // after the security headers, so its 400s carry them too
        app.UseMetadataHeadRequests(); // before the document cache, which then answers a HEAD as the GET it serves
        app.UseProtocolDocumentCache();
        app.UseStaticFiles();
        app.UseRouting();
        app.UseCors();
        app.UseRequestRateLimits();
        app.UseAuthentication();
        app.UseAuthorization();
        return app;
    }

    public static WebApplication MapHosting(this WebApplication app)
    {
        app.MapRazorPages();
        app.MapHealthChecks("/health", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous().GetAndHeadOnly();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready") }).AllowAnonymous().GetAndHeadOnly();
        // An address nothing answers is a 404 (the friendly error page for a browser), not deny-by-default's sign-in
        // page: a client with a mistyped endpoint should learn that, and there is nothing there to protect. Anything
        // mapped, and every protocol endpoint OpenIddict answers itself before routing's endpoint runs, is unaffected.
        app.MapFallback("{**path}", context =>
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }).AllowAnonymous();
        return app;
    }

    /// <summary>
    /// Only GET and HEAD, for endpoints that only read and are mapped without methods (health checks, the Prometheus
    /// scrape), which would otherwise answer any method as a GET: another is 405 with <c>Allow: GET, HEAD</c>. Not
    /// routing's method metadata: its 405 endpoint is not anonymous, so deny-by-default would send it to the login page.
    /// </summary>
    public static TBuilder GetAndHeadOnly<TBuilder>(this TBuilder endpoints) where TBuilder : IEndpointConventionBuilder
    {
        endpoints.Add(endpoint =>
        {
            var answer = endpoint.RequestDelegate!;
            endpoint.RequestDelegate = context => HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method)
                ? answer(context)
                : MethodNotAllowedAsync(context);
        });
        return endpoints;
    }

    private static Task MethodNotAllowedAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
        context.Response.Headers.Allow = "GET, HEAD";
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync("This address answers GET and HEAD only.");
    }

    private static async Task HandleExceptionAsync(HttpContext context)
    {
        var exception = context.Features.Get<IExceptionHandlerFeature>()?.Error;
        var failure = Classify(exception);
        var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("IdentityServer.Errors");
        switch (failure)
        {
            case Failure.Malformed:
                logger.LogWarning(HostingEvents.MalformedRequest, exception, "Request {Method} {Path} is malformed ({RequestId})",
                    context.Request.Method, context.Request.Path, context.TraceIdentifier);
                break;
            case Failure.OwnerDeleted:
                logger.LogWarning(HostingEvents.OwnerDeleted, exception,
                    "Request {Method} {Path} lost a race: what it was writing for was deleted meanwhile ({RequestId})",
                    context.Request.Method, context.Request.Path, context.TraceIdentifier);
                break;
            default:
                logger.LogError(HostingEvents.UnhandledException, exception, "Request {Method} {Path} failed ({RequestId})",
                    context.Request.Method, context.Request.Path, context.TraceIdentifier);
                break;
        }

        var adminApi = context.Request.Path.StartsWithSegments("/api");
        context.Response.StatusCode = failure switch
        {
            Failure.DatabaseDown => StatusCodes.Status503ServiceUnavailable,
            // A body over the limit is 413; anything else that cannot be parsed, 400.
            Failure.Malformed => exception.AndItsCauses().OfType<Microsoft.AspNetCore.Http.BadHttpRequestException>().FirstOrDefault()?.StatusCode
                is StatusCodes.Status413PayloadTooLarge ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest,
            Failure.OwnerDeleted => adminApi ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest,
            _ => StatusCodes.Status500InternalServerError,
        };
        if (ProtocolRoutes.IsProtocolApi(context.Request.Path) || adminApi)
        {
            var (error, description) = failure switch
            {
                Failure.DatabaseDown => (Errors.TemporarilyUnavailable, "The server cannot reach its database; try again shortly."),
                Failure.Malformed when context.Response.StatusCode == StatusCodes.Status413PayloadTooLarge =>
                    (Errors.InvalidRequest, $"The request's form body is larger than the {FormBodyValidation.MaxFormBodyBytes} bytes allowed."),
                Failure.Malformed => (Errors.InvalidRequest, "The request is malformed (it cannot be parsed)."),
                Failure.OwnerDeleted => (adminApi ? "conflict" : Errors.InvalidGrant,
                    "The client, user or authorization this request was for was deleted while it was being handled."),
                _ => (Errors.ServerError, $"The server could not complete the request (request id {context.TraceIdentifier})."),
            };
            TokenResponseMetrics.CountAnsweredOutsideOpenIddict(context, error);
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(JsonSerializer.Serialize(new Dictionary<string, string>
            {
                [Parameters.Error] = error,
                [Parameters.ErrorDescription] = description,
            }));
            return;
        }

        var message = failure switch
        {
            Failure.DatabaseDown => "The server is temporarily unavailable. Try again in a moment.",
            Failure.Malformed => "The server could not understand this request.",
            Failure.OwnerDeleted => "The application or account this request was for no longer exists.",
            _ => "The server could not complete your request.",
        };
        context.Response.ContentType = "text/html; charset=utf-8";
        await context.Response.WriteAsync(
            HandWrittenPage.Head(context.Request, "Something went wrong") + "<body><main><h1>Something went wrong</h1>" +
            $"<p>{message}</p>" +
            $"<p>If you contact support, quote this request id: <code>{WebUtility.HtmlEncode(context.TraceIdentifier)}</code></p></main></body></html>");
    }

    private enum Failure
    {
        Unexpected,
        DatabaseDown,
        Malformed,
        OwnerDeleted,
    }

    /// <summary>
    /// A write that lost a race with a deletion, and text the database refused, are database exceptions too, so they are
    /// told apart first.
    /// </summary>
    private static Failure Classify(Exception? exception) =>
        DatabaseErrors.IsForeignKeyViolation(exception) ? Failure.OwnerDeleted
        : DatabaseErrors.IsUnstorableText(exception) ? Failure.Malformed
        : IsDatabaseUnavailable(exception) ? Failure.DatabaseDown
        : IsMalformedRequest(exception) ? Failure.Malformed
        : Failure.Unexpected;

    /// <summary>
    /// A request the framework cannot parse (a form with a NUL character or too many fields, a body over the limit):
    /// the client's fault, so a 400, not a 500. These surface as exceptions from whoever reads the form first
    /// (often OpenIddict, inside the authentication middleware), so they are mapped here.
    /// </summary>
    private static bool IsMalformedRequest(Exception? exception) =>
        exception.AndItsCauses().Any(e => e is InvalidDataException or Microsoft.AspNetCore.Http.BadHttpRequestException);

    private static bool IsDatabaseUnavailable(Exception? exception) =>
        exception.AndItsCauses().Any(e => e is DbException or RetryLimitExceededException or TimeoutException);
}

public static class HostingEvents
{
    public static readonly EventId UnhandledException = new(9001, nameof(UnhandledException));
    public static readonly EventId MalformedRequest = new(9002, nameof(MalformedRequest));
    public static readonly EventId RateLimited = new(9003, nameof(RateLimited));
    public static readonly EventId OwnerDeleted = new(9004, nameof(OwnerDeleted));
    public static readonly EventId ForwardedHeadersFromAnySender = new(9005, nameof(ForwardedHeadersFromAnySender));
    public static readonly EventId LinksFromHostHeader = new(9006, nameof(LinksFromHostHeader));
    public static readonly EventId ForwardedProtoIgnored = new(9007, nameof(ForwardedProtoIgnored));
}
