using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Keys;

/// <summary>
/// The crypto provider factory of each signing key (one factory per key instance): it remembers the signatures the key
/// has verified. A resource server introspects the same access token on each of its calls, and checking its signature
/// again (an RSA public-key operation) was the largest single item of an introspection's CPU. The same bytes verify
/// the same way under one key and algorithm, so a success is remembered under a SHA-256 of the signed bytes' length,
/// the signed bytes and the signature: a token changed anywhere, or split differently between the two, hashes
/// differently and is checked in full. Failures are not remembered. Each algorithm the key is asked to verify with
/// has a memory of its own, of at most twice <see cref="Generation"/> signatures (about 0.6 MB): when one generation
/// is full, it becomes the old one and the one before is dropped. A key no longer in the ring is no longer offered to
/// verify anything. Expiry and the rest of a token are checked on every request, as before.
/// </summary>
public sealed class RememberingCryptoProviderFactory : CryptoProviderFactory
{
    internal const int Generation = 4_096;

    private readonly ConcurrentDictionary<string, RememberingVerifier> _verifiers = new(StringComparer.Ordinal);
    private SecurityKey? _key;

    public override SignatureProvider CreateForVerifying(SecurityKey key, string algorithm)
    {
        // Bound to the first key it verifies for (it is made for one); any other key is checked in full.
        if (!ReferenceEquals(Interlocked.CompareExchange(ref _key, key, null) ?? key, key))
        {
            return base.CreateForVerifying(key, algorithm);
        }

        return _verifiers.GetOrAdd(algorithm, static (algorithm, state) => new RememberingVerifier(state.Factory.CreateVerifier(state.Key, algorithm)),
            (Factory: this, Key: key));
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
        private readonly Lock _turnover = new();
        private ConcurrentDictionary<Digest, bool> _current = new();
        private ConcurrentDictionary<Digest, bool> _previous = new();
        private int _currentCount;

        public override byte[] Sign(byte[] input) => inner.Sign(input);

        public override bool Verify(byte[] input, byte[] signature) => Verify(input, 0, input.Length, signature, 0, signature.Length);

        public override bool Verify(byte[] input, int inputOffset, int inputLength, byte[] signature, int signatureOffset, int signatureLength)
        {
            var digest = Digest.Of(input.AsSpan(inputOffset, inputLength), signature.AsSpan(signatureOffset, signatureLength));
            if (_current.ContainsKey(digest) || _previous.ContainsKey(digest))
            {
                return true;
            }

            if (!inner.Verify(input, inputOffset, inputLength, signature, signatureOffset, signatureLength))
            {
                return false;
            }

            Remember(digest);
            return true;
        }

        private void Remember(Digest digest)
        {
            if (Interlocked.Increment(ref _currentCount) > Generation)
            {
                lock (_turnover)
                {
                    if (Volatile.Read(ref _currentCount) > Generation)
                    {
                        _previous = _current;
                        _current = new ConcurrentDictionary<Digest, bool>();
                        Volatile.Write(ref _currentCount, 1);
                    }
                }
            }

            _current.TryAdd(digest, true);
        }

        protected override void Dispose(bool disposing)
        {
            // The inner provider belongs to the factory's cache.
        }
    }

    /// <summary>SHA-256 of the signed bytes' length, the signed bytes and the signature.</summary>
    private readonly record struct Digest(ulong A, ulong B, ulong C, ulong D)
    {
        public static Digest Of(ReadOnlySpan<byte> signed, ReadOnlySpan<byte> signature)
        {
            var length = sizeof(int) + signed.Length + signature.Length;
            var rented = length > 4096 ? ArrayPool<byte>.Shared.Rent(length) : null;
            var all = rented is null ? stackalloc byte[length] : rented.AsSpan(0, length);
            try
            {
                BinaryPrimitives.WriteInt32LittleEndian(all, signed.Length);
                signed.CopyTo(all[sizeof(int)..]);
                signature.CopyTo(all[(sizeof(int) + signed.Length)..]);
                Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
                SHA256.HashData(all, hash);
                var words = MemoryMarshal.Cast<byte, ulong>(hash);
                return new Digest(words[0], words[1], words[2], words[3]);
            }
            finally
            {
                // The signed bytes are a token's claims: not left behind in a shared buffer.
                all.Clear();
                if (rented is not null)
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }
            }
        }
    }
}
