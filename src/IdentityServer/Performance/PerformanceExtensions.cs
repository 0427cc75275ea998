using IdentityServer.Data;
using IdentityServer.Shared;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;
using static OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Performance;

public static class PerformanceExtensions
{
    /// <summary>
    /// What keeps the token endpoint from waiting on the database or a slow hash: process-wide caches of clients and
    /// scopes, remembered secret verifications, group commit of new token entries, on SQLite one in-process writer at
    /// a time, a dispatcher that looks each OpenIddict event's handlers up once, codes and refresh tokens without what the token endpoint makes afresh, endpoint matching without building
    /// URIs, token and introspection responses written into pooled buffers, and OpenIddict's per-request entity caches
    /// made only when used. Call after <c>AddAuthorizationServer</c> (it replaces OpenIddict's managers, token store,
    /// dispatcher, endpoint matching, entity caches and those two response writers).
    /// </summary>
    public static WebApplicationBuilder AddPerformance(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<PerformanceOptions>().BindConfiguration(PerformanceOptions.Section).ValidateSettings(PerformanceOptions.Section).ValidateOnStart();
        builder.Services.AddSingleton(typeof(SnapshotCache<>));
        builder.Services.AddSingleton<SecretVerificationCache>();
        builder.Services.AddSingleton<TokenWriteQueue>();
        builder.Services.AddSingleton<PreparedTokenReader>();
        builder.Services.AddHostedService<NativeHeapTrimmer>();
        var registrations = builder.Services;
        builder.Services.AddSingleton(services => new ServerHandlerTable(
            services.GetRequiredService<IOptionsMonitor<OpenIddictServerOptions>>(), services, registrations));
        builder.Services.Replace(ServiceDescriptor.Scoped<IOpenIddictServerDispatcher, ServerEventDispatcher>());
        builder.Services.Replace(ServiceDescriptor.Scoped(typeof(IOpenIddictApplicationCache<>), typeof(LazyApplicationCache<>)));
        builder.Services.Replace(ServiceDescriptor.Scoped(typeof(IOpenIddictAuthorizationCache<>), typeof(LazyAuthorizationCache<>)));
        builder.Services.Replace(ServiceDescriptor.Scoped(typeof(IOpenIddictScopeCache<>), typeof(LazyScopeCache<>)));
        builder.Services.Replace(ServiceDescriptor.Scoped(typeof(IOpenIddictTokenCache<>), typeof(LazyTokenCache<>)));

        builder.Services.AddOpenIddict().AddCore(core => core
            .ReplaceApplicationManager<OpenIddictEntityFrameworkCoreApplication, CachingApplicationManager>()
            .ReplaceScopeManager<OpenIddictEntityFrameworkCoreScope, CachingScopeManager>()
            .ReplaceTokenStore<OpenIddictEntityFrameworkCoreToken, BatchingTokenStore>()
            .ReplaceAuthorizationStore<OpenIddictEntityFrameworkCoreAuthorization, AuthorizationLookupStore>())
            .AddServer(server => server.AddEventHandler(IdentityTokenStorage.Descriptor)
                .AddEventHandler(LeanGrantTokens.Descriptor)
                .RemoveEventHandler(OpenIddictServerHandlers.InferEndpointType.Descriptor)
                .AddEventHandler(EndpointTypeResolver.Descriptor)
                .RemoveEventHandler(ProcessJsonResponse<ApplyTokenResponseContext>.Descriptor)
                .AddEventHandler(PooledJsonResponseWriter<ApplyTokenResponseContext>.Descriptor)
                .RemoveEventHandler(ProcessJsonResponse<ApplyIntrospectionResponseContext>.Descriptor)
                .AddEventHandler(PooledJsonResponseWriter<ApplyIntrospectionResponseContext>.Descriptor));

        var serialize = builder.Configuration.GetValue($"{PerformanceOptions.Section}:{nameof(PerformanceOptions.SerializeSqliteWrites)}", true);
        if (serialize && DataExtensions.ReadProvider(builder.Configuration) == DatabaseProvider.Sqlite)
        {
            builder.Services.AddSingleton<SqliteWriteGate>();
            builder.Services.ConfigureDbContext<SqliteApplicationDbContext>((services, options) =>
                options.AddInterceptors(services.GetRequiredService<SqliteWriteGate>()));
        }

        return builder;
    }
}
