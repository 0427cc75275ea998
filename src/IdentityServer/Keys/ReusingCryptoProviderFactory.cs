using System.Collections.Concurrent;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Keys;

/// <summary>
/// The crypto provider factory of our symmetric encryption key. Every code and refresh token is a JWE (A256KW +
/// A256CBC-HS512), and Microsoft.IdentityModel creates a key-wrap provider (an AES instance) and an authenticated
/// encryption provider (AES and HMAC instances) per token without disposing them, leaving native OpenSSL handles to
/// the finalizer thread: measured at a quarter of the server's CPU time under refresh-token load. Here the key-wrap
/// provider of our key is created once and reused (its transforms are guarded by the library's own lock), and each
/// authenticated encryption provider disposes itself after its single use.
/// </summary>
public sealed class ReusingCryptoProviderFactory : CryptoProviderFactory
{
    private readonly ConcurrentDictionary<(string? KeyId, string Algorithm, bool Unwrap), KeyWrapProvider> _keyWrapProviders = new();

    public override KeyWrapProvider CreateKeyWrapProvider(SecurityKey key, string algorithm) =>
        key is SymmetricSecurityKey
            ? _keyWrapProviders.GetOrAdd((key.KeyId, algorithm, false), _ => base.CreateKeyWrapProvider(key, algorithm))
            : base.CreateKeyWrapProvider(key, algorithm);

    public override KeyWrapProvider CreateKeyWrapProviderForUnwrap(SecurityKey key, string algorithm) =>
        key is SymmetricSecurityKey
            ? _keyWrapProviders.GetOrAdd((key.KeyId, algorithm, true), _ => base.CreateKeyWrapProviderForUnwrap(key, algorithm))
            : base.CreateKeyWrapProviderForUnwrap(key, algorithm);

    public override void ReleaseKeyWrapProvider(KeyWrapProvider provider)
    {
        if (!_keyWrapProviders.Values.Contains(provider))
        {
            base.ReleaseKeyWrapProvider(provider);
        }
    }

    public override AuthenticatedEncryptionProvider CreateAuthenticatedEncryptionProvider(SecurityKey key, string algorithm) =>
        new SingleUseAuthenticatedEncryptionProvider(key, algorithm);

    /// <summary>Content encryption keys are random per token, so each provider serves one token: disposed right after.</summary>
    private sealed class SingleUseAuthenticatedEncryptionProvider(SecurityKey key, string algorithm) : AuthenticatedEncryptionProvider(key, algorithm)
    {
        public override AuthenticatedEncryptionResult Encrypt(byte[] plaintext, byte[] authenticatedData)
        {
            try
            {
                return base.Encrypt(plaintext, authenticatedData);
            }
            finally
            {
                Dispose();
            }
        }

        public override byte[] Decrypt(byte[] ciphertext, byte[] authenticatedData, byte[] iv, byte[] authenticationTag)
        {
            try
            {
                return base.Decrypt(ciphertext, authenticatedData, iv, authenticationTag);
            }
            finally
            {
                Dispose();
            }
        }
    }
}
