namespace IdentityServer.Keys;

/// <summary>
/// The <c>Keys</c> configuration section. With no certificate configured, keys are generated on first start and
/// stored in the database, protected with Data Protection.
/// </summary>
public sealed class KeysOptions
{
    public const string Section = "Keys";

    public CertificateOptions? SigningCertificate { get; set; }

    public CertificateOptions? EncryptionCertificate { get; set; }
}

/// <summary>A certificate file: a PFX (with <see cref="Password"/>) or a PEM certificate with its PEM private key.</summary>
public sealed class CertificateOptions
{
    public string? Path { get; set; }

    public string? Password { get; set; }

    /// <summary>For a PEM certificate: the PEM file of its private key.</summary>
    public string? KeyPath { get; set; }
}
