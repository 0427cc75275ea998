using System.Security.Cryptography.X509Certificates;
using IdentityServer.Data;
using IdentityServer.Hosting;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.Options;
using OpenIddict.Server;

namespace IdentityServer.Keys;

public static class KeysExtensions
{
    /// <summary>Data Protection's application name: instances with the same one share keys (and read each other's cookies).</summary>
    public const string DataProtectionApplicationName = "IdentityServer";

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
        builder.Services.AddHealthChecks().AddCheck<KeyRotationHealthCheck>("keys", tags: ["ready"]);

        // Data Protection keys (cookies, antiforgery, our protected signing keys) live in the shared database,
        // so every instance reads what another wrote and nothing is lost on restart.
        var dataProtection = builder.Services.AddDataProtection()
            .SetApplicationName(DataProtectionApplicationName)
            .PersistKeysToDbContext<ApplicationDbContext>();
        builder.Services.AddSingleton(builder.ProtectDataProtectionKeys(dataProtection));
        builder.Services.AddSingleton<KeyRingProtection>();
        builder.Services.AddSingleton<IConfigureOptions<OpenIddictServerOptions>, UseKeyRingForOpenIddict>();
        builder.Services.AddOpenIddict().AddServer(server => server.UseKeyRing());
        return builder;
    }

    /// <summary>
    /// With <c>Keys:KeyRingCertificate</c>, Data Protection encrypts the keys it stores with that certificate and
    /// trusts only keys so encrypted (<see cref="CertificateEncryptedKeysOnly"/>). Certificates are read here, at
    /// composition, so a file that cannot be used stops the start.
    /// </summary>
    private static KeyRingCertificate ProtectDataProtectionKeys(this WebApplicationBuilder builder, IDataProtectionBuilder dataProtection)
    {
        const string current = $"{KeysOptions.Section}:{nameof(KeysOptions.KeyRingCertificate)}";
        const string previous = $"{KeysOptions.Section}:{nameof(KeysOptions.PreviousKeyRingCertificates)}";
        var certificate = CertificateFiles.Load(builder.Configuration.GetSection(current).Get<CertificateOptions>(), current);
        var replaced = (builder.Configuration.GetSection(previous).Get<List<CertificateOptions>>() ?? [])
            .Select((options, i) => CertificateFiles.Load(options, $"{previous}:{i}")).OfType<X509Certificate2>().ToList();
        if (certificate is null)
        {
            return new KeyRingCertificate(null, replaced);
        }

        // XML encryption wraps each key's secret with the certificate's RSA public key.
        using var rsa = certificate.GetRSAPublicKey()
            ?? throw new StartupConfigurationException($"{current}: '{certificate.Subject}' is not an RSA certificate.");

        // The certificate is given explicitly: on Linux Data Protection would otherwise look for it in the X.509 store.
        dataProtection.ProtectKeysWithCertificate(certificate).UnprotectKeysWithAnyCertificate(certificate);
        builder.Services.PostConfigure<KeyManagementOptions>(options => options.XmlRepository =
            new CertificateEncryptedKeysOnly(options.XmlRepository ?? throw new InvalidOperationException("No Data Protection key repository."), certificate));
        return new KeyRingCertificate(certificate, replaced);
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
