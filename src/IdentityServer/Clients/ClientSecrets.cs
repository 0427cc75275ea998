using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Clients;

/// <summary>
/// The one place client secrets are generated: 256 random bits from the system's cryptographic generator,
/// base64url without padding (43 characters), returned to the admin once and stored only hashed.
/// </summary>
public static class ClientSecrets
{
    public const int ByteLength = 32;

    public static string Generate() => Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(ByteLength));
}
