using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Registration;

public static class RegistrationExtensions
{
    /// <summary>Dynamic client registration (RFC 7591, 7592), when <c>Registration:Enabled</c>: its settings and its place in discovery.</summary>
    public static WebApplicationBuilder AddRegistration(this WebApplicationBuilder builder)
    {
        CheckAllowedGrantTypes(builder.Configuration.GetSection(RegistrationOptions.Section).Get<RegistrationOptions>()?.AllowedGrantTypes ?? []);
        builder.Services.AddOptions<RegistrationOptions>().BindConfiguration(RegistrationOptions.Section).PostConfigure(options =>
        {
            if (options.AllowedScopes.Count == 0)
            {
                options.AllowedScopes.AddRange(RegistrationOptions.DefaultScopes);
            }

            if (options.AllowedGrantTypes.Count == 0)
            {
                options.AllowedGrantTypes.AddRange(RegistrationOptions.DefaultGrantTypes);
            }
        });
        // Clients registered while it was on keep this after it is turned off.
        builder.Services.AddOpenIddict().AddServer(server => server.AddEventHandler(SelfRegisteredClientErrors.Descriptor));
        if (builder.Configuration.GetSection(RegistrationOptions.Section).Get<RegistrationOptions>()?.Enabled == true)
        {
            builder.Services.AddOpenIddict().AddServer(server => server.AddEventHandler<HandleConfigurationRequestContext>(handler =>
                handler.UseInlineHandler(context =>
                {
                    // Under the request's base address, as OpenIddict names its own endpoints.
                    if (context.BaseUri is { } baseUri)
                    {
                        context.Metadata["registration_endpoint"] = new Uri(baseUri, Authorization.ProtocolRoutes.Registration.TrimStart('/')).AbsoluteUri;
                    }

                    return default;
                })));
        }

        return builder;
    }

    /// <summary>
    /// Each allowed grant is one a client document can have. Another (<c>password</c>, a typo) was taken, and every
    /// registration asking for it then failed on the document's rules, leaving the operator's setting unexplained.
    /// </summary>
    private static void CheckAllowedGrantTypes(List<string> grants)
    {
        for (var i = 0; i < grants.Count; i++)
        {
            if (!Clients.ClientDocumentValidator.SupportedGrantTypes.Contains(grants[i]))
            {
                throw new Hosting.StartupConfigurationException(
                    $"{RegistrationOptions.Section}:{nameof(RegistrationOptions.AllowedGrantTypes)}:{i}: '{grants[i]}' is not a grant a client can have here; " +
                    $"use any of: {string.Join(", ", Clients.ClientDocumentValidator.SupportedGrantTypes)}.");
            }
        }
    }
}
