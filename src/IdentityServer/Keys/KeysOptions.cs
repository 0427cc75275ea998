namespace IdentityServer.Keys;

/// <summary>
/// The <c>Keys</c> configuration section. With no certificate configured, keys are generated and stored in the
/// database, protected with Data Protection, and the signing key rotates by itself.
/// </summary>
public sealed class KeysOptions
{
    public const string Section = "Keys";

    public static readonly IReadOnlySet<string> SupportedAlgorithms = new HashSet<string>(StringComparer.Ordinal) { "RS256", "ES256" };

    public CertificateOptions? SigningCertificate { get; set; }

    public CertificateOptions? EncryptionCertificate { get; set; }

    /// <summary>
    /// The certificate that encrypts Data Protection's own keys where they are stored (the database). Data Protection
    /// protects the stored keys' private parts, the login cookie and form tokens; without this certificate its keys
    /// are stored in plain text beside what they protect.
    /// </summary>
    public CertificateOptions? KeyRingCertificate { get; set; }

    /// <summary>Certificates that encrypted Data Protection keys before <see cref="KeyRingCertificate"/> replaced them: still needed to read those keys.</summary>
    public List<CertificateOptions> PreviousKeyRingCertificates { get; set; } = [];

    /// <summary>The algorithm of newly generated signing keys: <c>RS256</c> (RSA-2048) or <c>ES256</c> (ECDSA P-256).</summary>
    public string Algorithm { get; set; } = "RS256";

    /// <summary>How long a new signing key is published in the JWKS before it starts signing (and a new internal key stored before it is used).</summary>
    public TimeSpan PublishAhead { get; set; } = TimeSpan.FromDays(2);

    /// <summary>How long a signing key signs (and an internal key is used) before the next one takes over.</summary>
    public TimeSpan RotationPeriod { get; set; } = TimeSpan.FromDays(90);

    /// <summary>
    /// How long a retired key stays published beyond the longest lifetime of the tokens it signed (access and id
    /// tokens), so that every token it signed can still be validated.
    /// </summary>
    public TimeSpan RetirementMargin { get; set; } = TimeSpan.FromDays(1);

    /// <summary>How often each instance checks the database for new keys and whether a rotation is due.</summary>
    public TimeSpan CheckInterval { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>A certificate file: a PFX (with <see cref="Password"/>) or a PEM certificate with its PEM private key.</summary>
public sealed class CertificateOptions
{
    public string? Path { get; set; }

    public string? Password { get; set; }

    /// <summary>For a PEM certificate: the PEM file of its private key.</summary>
    public string? KeyPath { get; set; }
}
