using IdentityServer.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using OpenIddict.Server;

namespace IdentityServer.Keys;

public static class KeysExtensions
{
    public static WebApplicationBuilder AddKeys(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<KeysOptions>().BindConfiguration(KeysOptions.Section)
            .Validate(o => KeysOptions.SupportedAlgorithms.Contains(o.Algorithm), "Keys:Algorithm must be RS256 or ES256.")
            .Validate(o => o.PublishAhead >= TimeSpan.Zero && o.RotationPeriod > o.PublishAhead,
                "Keys:RotationPeriod must be longer than Keys:PublishAhead (and PublishAhead not negative).")
            .Validate(o => o.RetirementMargin >= TimeSpan.Zero, "Keys:RetirementMargin must not be negative.")
            .Validate(o => o.CheckInterval >= TimeSpan.FromSeconds(1), "Keys:CheckInterval must be at least one second.")
            .ValidateOnStart();
        builder.Services.AddSingleton<KeyRing>();
        builder.Services.AddHostedService<KeyRotationService>();

        // Data Protection keys (cookies, antiforgery, our protected signing keys) live in the shared database,
        // so every instance reads what another wrote and nothing is lost on restart.
        builder.Services.AddDataProtection()
            .SetApplicationName("IdentityServer")
            .PersistKeysToDbContext<ApplicationDbContext>();
        builder.Services.AddSingleton<IConfigureOptions<OpenIddictServerOptions>, UseKeyRingForOpenIddict>();
        builder.Services.AddOpenIddict().AddServer(server => server.UseKeyRing());
        return builder;
    }

    /// <summary>
    /// Hands the keys loaded at start to OpenIddict when its options are first built (its start-up checks want a
    /// signing and an encryption key); from then on the handlers in <see cref="OpenIddictKeyHandlers"/> read the key ring.
    /// </summary>
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
