using IdentityServer.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using OpenIddict.Server;

namespace IdentityServer.Keys;

public static class KeysExtensions
{
    public static WebApplicationBuilder AddKeys(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<KeysOptions>().BindConfiguration(KeysOptions.Section).ValidateOnStart();
        builder.Services.AddSingleton<KeyRing>();

        // Data Protection keys (cookies, antiforgery, our protected signing keys) live in the shared database,
        // so every instance reads what another wrote and nothing is lost on restart.
        builder.Services.AddDataProtection()
            .SetApplicationName("IdentityServer")
            .PersistKeysToDbContext<ApplicationDbContext>();
        builder.Services.AddSingleton<IConfigureOptions<OpenIddictServerOptions>, UseKeyRingForOpenIddict>();
        return builder;
    }

    /// <summary>Hands the loaded keys to OpenIddict when its options are first built (after start-up).</summary>
    private sealed class UseKeyRingForOpenIddict(KeyRing keys) : IConfigureOptions<OpenIddictServerOptions>
    {
        public void Configure(OpenIddictServerOptions options)
        {
            foreach (var credentials in keys.SigningCredentials)
            {
                options.SigningCredentials.Add(credentials);
            }

            foreach (var credentials in keys.EncryptionCredentials)
            {
                options.EncryptionCredentials.Add(credentials);
            }
        }
    }
}
