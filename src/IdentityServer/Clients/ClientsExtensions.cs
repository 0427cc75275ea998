using IdentityServer.Shared;

namespace IdentityServer.Clients;

public static class ClientsExtensions
{
    /// <summary>
    /// Client documents: seeding from configuration and the registered browser origins; each confidential client
    /// authenticates with its registered method only; client assertions used once; the keys of clients registered by
    /// <c>jwks_uri</c> read from it.
    /// </summary>
    public static WebApplicationBuilder AddClients(this WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<Seeder>();
        builder.Services.AddSingleton<ClientOrigins>();
        builder.Services.AddOptions<ClientOptions>().BindConfiguration(ClientOptions.Section).ValidateSettings(ClientOptions.Section).ValidateOnStart();
        builder.Services.AddSingleton<ClientKeySets>();
        builder.Services.AddHttpClient(ClientKeySets.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false, ConnectTimeout = ClientKeySets.Timeout })
            .RemoveAllLoggers();
        builder.Services.AddOpenIddict().AddServer(server => server.RequireRegisteredAuthMethod().UseClientAssertionReplayProtection().AnswerClientAssertionErrorsAsInvalidClient().RefuseMalformedBasicCredentialsAsInvalidClient());
        return builder;
    }
}
