namespace IdentityServer.Clients;

public static class ClientsExtensions
{
    /// <summary>
    /// Client documents: seeding from configuration and the registered browser origins; each confidential client
    /// authenticates with its registered method only; client assertions used once.
    /// </summary>
    public static WebApplicationBuilder AddClients(this WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<Seeder>();
        builder.Services.AddSingleton<ClientOrigins>();
        builder.Services.AddOpenIddict().AddServer(server => server.RequireRegisteredAuthMethod().UseClientAssertionReplayProtection());
        return builder;
    }
}
