using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Keys;

/// <summary>
/// The crypto provider factory of each signing key: it remembers the signatures the key has verified. A resource
/// server introspects the same access token on each of its calls, and checking its signature again (an RSA public-key
/// operation) was about a tenth of an introspection's CPU. The same bytes verify the same way under one key, so a
/// success is remembered under a SHA-256 of the signed bytes and the signature together: a token changed anywhere,
/// header, payload or signature, hashes differently and is checked in full. Failures are not remembered. The memory
/// belongs to the key's instance, so a key the ring drops takes it along; at most <see cref="Capacity"/> signatures
/// are kept per key (then it starts over). Expiry and everything else about a token are checked as before, on every
/// request.
/// </summary>
public sealed class RememberingCryptoProviderFactory : CryptoProviderFactory
{
    internal const int Capacity = 10_000;

    private readonly ConcurrentDictionary<SecurityKey, RememberingVerifier> _verifiers = new(ReferenceEqualityComparer.Instance);

    public override SignatureProvider CreateForVerifying(SecurityKey key, string algorithm)
    {
        var verifier = _verifiers.GetOrAdd(key, static (key, state) => new RememberingVerifier(state.Factory.CreateVerifier(key, state.Algorithm)),
            (Factory: this, Algorithm: algorithm));

        // A key verifies with one algorithm; another (not expected) is checked in full every time.
        return verifier.Algorithm == algorithm ? verifier : base.CreateForVerifying(key, algorithm);
    }

    public override void ReleaseSignatureProvider(SignatureProvider signatureProvider)
    {
        // The remembering verifiers live as long as their key.
        if (signatureProvider is not RememberingVerifier)
        {
            base.ReleaseSignatureProvider(signatureProvider);
        }
    }

    private SignatureProvider CreateVerifier(SecurityKey key, string algorithm) => base.CreateForVerifying(key, algorithm);

    private sealed class RememberingVerifier(SignatureProvider inner) : SignatureProvider(inner.Key, inner.Algorithm)
    {
        private readonly ConcurrentDictionary<Digest, bool> _verified = new();

        public override byte[] Sign(byte[] input) => inner.Sign(input);

        public override bool Verify(byte[] input, byte[] signature) => Verify(input, 0, input.Length, signature, 0, signature.Length);

        public override bool Verify(byte[] input, int inputOffset, int inputLength, byte[] signature, int signatureOffset, int signatureLength)
        {
            var digest = Digest.Of(input.AsSpan(inputOffset, inputLength), signature.AsSpan(signatureOffset, signatureLength));
            if (_verified.ContainsKey(digest))
            {
                return true;
            }

            if (!inner.Verify(input, inputOffset, inputLength, signature, signatureOffset, signatureLength))
            {
                return false;
            }

            if (_verified.Count >= Capacity)
            {
                _verified.Clear();
            }

            _verified.TryAdd(digest, true);
            return true;
        }

        protected override void Dispose(bool disposing)
        {
            // The inner provider belongs to the factory's cache.
        }
    }

    /// <summary>SHA-256 of the signed bytes followed by the signature.</summary>
    private readonly record struct Digest(ulong A, ulong B, ulong C, ulong D)
    {
        public static Digest Of(ReadOnlySpan<byte> signed, ReadOnlySpan<byte> signature)
        {
            var both = ArrayPool<byte>.Shared.Rent(signed.Length + signature.Length);
            try
            {
                signed.CopyTo(both);
                signature.CopyTo(both.AsSpan(signed.Length));
                Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
                SHA256.HashData(both.AsSpan(0, signed.Length + signature.Length), hash);
                var words = MemoryMarshal.Cast<byte, ulong>(hash);
                return new Digest(words[0], words[1], words[2], words[3]);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(both);
            }
        }
    }
}
