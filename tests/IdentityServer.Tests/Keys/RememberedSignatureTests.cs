using System.Security.Cryptography;
using IdentityServer.Keys;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Tests.Keys;

/// <summary>
/// A signing key remembers the signatures it has verified (<see cref="RememberingCryptoProviderFactory"/>): what it
/// remembers must never answer for bytes that would not verify. The signed bytes and the signature arrive as two
/// arrays; the HTTP side is <c>A_token_changed_after_it_was_introspected_is_inactive_while_the_original_stays_active</c>.
/// </summary>
public sealed class RememberedSignatureTests
{
    private static readonly byte[] Signed = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"u8.ToArray();

    [Theory]
    [InlineData(SecurityAlgorithms.RsaSha256)]
    [InlineData(SecurityAlgorithms.EcdsaSha256)]
    public void A_signature_moved_partly_into_the_signed_bytes_is_refused_after_the_original_verified(string algorithm)
    {
        var (verifier, signature) = VerifiedOnce(algorithm);

        // The same bytes end to end, split elsewhere: the first byte of the signature moved to the end of the signed bytes.
        Assert.False(verifier.Verify([.. Signed, signature[0]], signature[1..]));
        Assert.True(verifier.Verify(Signed, signature));
    }

    [Theory]
    [InlineData(SecurityAlgorithms.RsaSha256)]
    [InlineData(SecurityAlgorithms.EcdsaSha256)]
    public void A_changed_signature_or_changed_bytes_are_refused_after_the_original_verified(string algorithm)
    {
        var (verifier, signature) = VerifiedOnce(algorithm);

        var changedSignature = signature.ToArray();
        changedSignature[^1] ^= 1;
        var changedBytes = Signed.ToArray();
        changedBytes[^1] ^= 1;
        Assert.False(verifier.Verify(Signed, changedSignature));
        Assert.False(verifier.Verify(changedBytes, signature));
    }

    /// <summary>Anyone can send a token naming another algorithm with a key's id: that must not change how the key checks its own.</summary>
    [Fact]
    public void A_token_naming_another_algorithm_does_not_change_how_the_key_checks_its_own()
    {
        var key = NewKey(SecurityAlgorithms.RsaSha256);
        var signature = Sign(key, SecurityAlgorithms.RsaSha256);
        var other = key.CryptoProviderFactory.CreateForVerifying(key, SecurityAlgorithms.RsaSsaPssSha256);
        Assert.False(other.Verify(Signed, signature));

        var verifier = key.CryptoProviderFactory.CreateForVerifying(key, SecurityAlgorithms.RsaSha256);
        Assert.Equal(SecurityAlgorithms.RsaSha256, verifier.Algorithm);
        Assert.Equal("RememberingVerifier", verifier.GetType().Name); // still remembering for its own algorithm
        Assert.True(verifier.Verify(Signed, signature));
        Assert.Same(verifier, key.CryptoProviderFactory.CreateForVerifying(key, SecurityAlgorithms.RsaSha256));
    }

    /// <summary>A new key's verifier after it verified <see cref="Signed"/> with the key's own signature once.</summary>
    private static (SignatureProvider Verifier, byte[] Signature) VerifiedOnce(string algorithm)
    {
        var key = NewKey(algorithm);
        var signature = Sign(key, algorithm);
        var verifier = key.CryptoProviderFactory.CreateForVerifying(key, algorithm);
        Assert.True(verifier.Verify(Signed, signature));
        return (verifier, signature);
    }

    private static AsymmetricSecurityKey NewKey(string algorithm) => algorithm == SecurityAlgorithms.EcdsaSha256
        ? new ECDsaSecurityKey(ECDsa.Create(ECCurve.NamedCurves.nistP256)) { CryptoProviderFactory = new RememberingCryptoProviderFactory() }
        : new RsaSecurityKey(RSA.Create(2048)) { CryptoProviderFactory = new RememberingCryptoProviderFactory() };

    private static byte[] Sign(SecurityKey key, string algorithm)
    {
        var signer = key.CryptoProviderFactory.CreateForSigning(key, algorithm);
        try
        {
            return signer.Sign(Signed);
        }
        finally
        {
            key.CryptoProviderFactory.ReleaseSignatureProvider(signer);
        }
    }
}
