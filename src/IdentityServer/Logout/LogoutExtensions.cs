using IdentityServer.Shared;

namespace IdentityServer.Logout;

public static class LogoutExtensions
{
    /// <summary>
    /// OpenID Connect Back-Channel and Front-Channel Logout: which clients signed in through which session, the logout
    /// tokens they get, and the frames the sign-out pages load.
    /// </summary>
    public static WebApplicationBuilder AddLogoutNotifications(this WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<FrontChannelLogout>();
        builder.Services.AddOptions<BackChannelLogoutOptions>().BindConfiguration(BackChannelLogoutOptions.Section)
            .ValidateSettings(BackChannelLogoutOptions.Section).ValidateOnStart();
        builder.Services.AddScoped<SessionClients>();
        builder.Services.AddScoped<LogoutTokenQueue>();
        builder.Services.AddSingleton<BackChannelLogoutSender>();
        builder.Services.AddHostedService(services => services.GetRequiredService<BackChannelLogoutSender>());
        // A client's answer is its status; a redirect is not followed (the token is for the registered URI only).
        // Its own log lines name the client, never the full URI (a query string may hold a secret): no request logging.
        builder.Services.AddHttpClient(BackChannelLogoutSender.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false })
            .RemoveAllLoggers();
        return builder;
    }
}
