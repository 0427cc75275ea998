using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Keys;

/// <summary>
/// OpenIddict builds its options (and reads their signing credentials) once; these handlers make it use the key ring
/// as it is at the moment of each request instead, so keys rotate without a restart.
/// </summary>
public static class OpenIddictKeyHandlers
{
    public static OpenIddictServerBuilder UseKeyRing(this OpenIddictServerBuilder server) => server
        .AddEventHandler<GenerateTokenContext>(handler => handler.UseSingletonHandler<SignWithCurrentKey>()
            .SetOrder(Protection.AttachSecurityCredentials.Descriptor.Order + 500).SetType(OpenIddictServerHandlerType.Custom))
        .AddEventHandler<ValidateTokenContext>(handler => handler.UseSingletonHandler<ValidateWithStoredKeys>()
            .SetOrder(Protection.ResolveTokenValidationParameters.Descriptor.Order + 500).SetType(OpenIddictServerHandlerType.Custom))
        .RemoveEventHandler(Discovery.AttachSigningKeys.Descriptor)
        .AddEventHandler<HandleJsonWebKeySetRequestContext>(handler => handler.UseSingletonHandler<PublishKeyRing>()
            .SetOrder(Discovery.AttachSigningKeys.Descriptor.Order).SetType(OpenIddictServerHandlerType.Custom))
        .AddEventHandler<HandleConfigurationRequestContext>(handler => handler.UseSingletonHandler<AdvertiseKeyRingAlgorithms>()
            .SetOrder(Discovery.AttachSigningAlgorithms.Descriptor.Order + 500).SetType(OpenIddictServerHandlerType.Custom));

    /// <summary>
    /// Access and id tokens (read by others, validated against the JWKS) are signed with the active key (id tokens with
    /// an RSA one, see <see cref="KeyRing.IdentitySigningCredentials"/>); the tokens only this server reads (codes,
    /// refresh tokens, device and user codes, pushed requests) with the active internal HMAC key, and those OpenIddict
    /// encrypts with the active encryption key.
    /// </summary>
    public sealed class SignWithCurrentKey(KeyRing keys) : IOpenIddictServerHandler<GenerateTokenContext>
    {
        public ValueTask HandleAsync(GenerateTokenContext context)
        {
            context.SigningCredentials = context.TokenType switch
            {
                TokenTypeIdentifiers.Private.AuthorizationCode or TokenTypeIdentifiers.RefreshToken or TokenTypeIdentifiers.Private.DeviceCode
                    or TokenTypeIdentifiers.Private.UserCode or TokenTypeIdentifiers.Private.RequestToken => keys.InternalSigningCredentials,
                TokenTypeIdentifiers.IdentityToken => keys.IdentitySigningCredentials,
                _ => keys.ActiveSigningCredentials,
            };
            if (context.EncryptionCredentials is not null)
            {
                context.EncryptionCredentials = keys.ActiveEncryptionCredentials;
            }

            return ValueTask.CompletedTask;
        }
    }

    /// <summary>
    /// Our own tokens validate against every stored key (not client assertions, which use the client's keys), after
    /// loading a key the token names that another instance may have just created.
    /// </summary>
    public sealed class ValidateWithStoredKeys(KeyRing keys) : IOpenIddictServerHandler<ValidateTokenContext>
    {
        public async ValueTask HandleAsync(ValidateTokenContext context)
        {
            if (context.TokenValidationParameters is { } parameters
                && !(context.ValidTokenTypes.Count == 1 && context.ValidTokenTypes.Contains(TokenTypeIdentifiers.Private.ClientAssertion)))
            {
                await LoadKeyNamedByAsync(keys, context.Token);
                parameters.IssuerSigningKeys = keys.ValidationKeys;
                parameters.IssuerSigningKeyValidator = HmacOnlyForInternalTokens;
                parameters.TokenDecryptionKeys = keys.DecryptionKeys;
            }
        }
    }

    /// <summary>Reloads the key ring when <paramref name="token"/> names a key it does not hold (see <see cref="KeyRing.LoadUnknownKeyAsync"/>).</summary>
    internal static Task LoadKeyNamedByAsync(KeyRing keys, string? token) =>
        token is not null && TokenKeyId.Of(token) is { } keyId && !keys.Knows(keyId) ? keys.LoadUnknownKeyAsync() : Task.CompletedTask;

    /// <summary>
    /// The internal HMAC keys are accepted only on the tokens they sign (codes, refresh tokens, device and user codes,
    /// pushed requests), never on an access or id token: whoever came to hold one cannot make a token an API or the
    /// admin API would accept, and a retired one, kept readable for refresh tokens, signs nothing else.
    /// </summary>
    internal static bool HmacOnlyForInternalTokens(SecurityKey key, SecurityToken token, TokenValidationParameters parameters) =>
        key is not SymmetricSecurityKey || token is JsonWebToken
        {
            Typ: JsonWebTokenTypes.Private.AuthorizationCode or JsonWebTokenTypes.Private.RefreshToken or JsonWebTokenTypes.Private.DeviceCode
                or JsonWebTokenTypes.Private.UserCode or JsonWebTokenTypes.Private.RequestToken,
        };

    /// <summary>The JWKS: the public parts of the published signing keys, never a private or symmetric key.</summary>
    public sealed class PublishKeyRing(KeyRing keys) : IOpenIddictServerHandler<HandleJsonWebKeySetRequestContext>
    {
        public ValueTask HandleAsync(HandleJsonWebKeySetRequestContext context)
        {
            foreach (var credentials in keys.Published())
            {
                if (ToPublicJwk(credentials) is { } jwk)
                {
                    context.Keys.Add(jwk);
                }
            }

            return ValueTask.CompletedTask;
        }

        private static JsonWebKey? ToPublicJwk(SigningCredentials credentials)
        {
            var jwk = new JsonWebKey { Use = JsonWebKeyUseNames.Sig, Alg = credentials.Algorithm, Kid = credentials.Kid };
            switch (credentials.Key)
            {
                case X509SecurityKey { PublicKey: RSA rsa } x509:
                    AddRsa(jwk, rsa.ExportParameters(false));
                    jwk.X5t = Base64UrlEncoder.Encode(x509.Certificate.GetCertHash());
                    jwk.X5c.Add(Convert.ToBase64String(x509.Certificate.RawData));
                    return jwk;
                case RsaSecurityKey { Rsa: { } rsa }:
                    AddRsa(jwk, rsa.ExportParameters(false));
                    return jwk;
                case RsaSecurityKey key:
                    AddRsa(jwk, key.Parameters);
                    return jwk;
                case ECDsaSecurityKey { ECDsa: { } ecdsa }:
                    var parameters = ecdsa.ExportParameters(false);
                    jwk.Kty = JsonWebAlgorithmsKeyTypes.EllipticCurve;
                    jwk.Crv = JsonWebKeyECTypes.P256;
                    jwk.X = Base64UrlEncoder.Encode(parameters.Q.X);
                    jwk.Y = Base64UrlEncoder.Encode(parameters.Q.Y);
                    return jwk;
                default:
                    return null;
            }
        }

        private static void AddRsa(JsonWebKey jwk, RSAParameters parameters)
        {
            jwk.Kty = JsonWebAlgorithmsKeyTypes.RSA;
            jwk.N = Base64UrlEncoder.Encode(parameters.Modulus);
            jwk.E = Base64UrlEncoder.Encode(parameters.Exponent);
        }
    }

    /// <summary>Discovery names the algorithms identity tokens are signed with (see <see cref="KeyRing.IdentityTokenAlgorithms"/>).</summary>
    public sealed class AdvertiseKeyRingAlgorithms(KeyRing keys) : IOpenIddictServerHandler<HandleConfigurationRequestContext>
    {
        public ValueTask HandleAsync(HandleConfigurationRequestContext context)
        {
            context.IdTokenSigningAlgorithms.Clear();
            foreach (var algorithm in keys.IdentityTokenAlgorithms())
            {
                context.IdTokenSigningAlgorithms.Add(algorithm);
            }

            return ValueTask.CompletedTask;
        }
    }
}
