using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Registration;

public static class RegistrationExtensions
{
    /// <summary>Dynamic client registration (RFC 7591, 7592), when <c>Registration:Enabled</c>: its settings and its place in discovery.</summary>
    public static WebApplicationBuilder AddRegistration(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RegistrationOptions>().BindConfiguration(RegistrationOptions.Section);
        if (builder.Configuration.GetSection(RegistrationOptions.Section).Get<RegistrationOptions>()?.Enabled == true)
        {
            builder.Services.AddOpenIddict().AddServer(server => server.AddEventHandler<HandleConfigurationRequestContext>(handler =>
                handler.UseInlineHandler(context =>
                {
                    if (context.BaseUri is { } baseUri)
                    {
                        context.Metadata["registration_endpoint"] = new Uri(context.Options.Issuer ?? baseUri,
                            Authorization.ProtocolRoutes.Registration.TrimStart('/')).AbsoluteUri;
                    }

                    return default;
                })));
        }

        return builder;
    }
}
