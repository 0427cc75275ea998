using System.Security.Cryptography;
using System.Text;

namespace IdentityServer.Shared;

/// <summary>
/// How a value a client sends is stored to be recognised later (a used <c>jti</c>, a registration access token): its
/// SHA-256 in lowercase hex. One length whatever was sent, never the value itself, and compared exactly under any
/// collation (SQL Server's default is case-insensitive).
/// </summary>
public static class StoredHash
{
    public const int Length = 64;

    public static string Of(string value) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)));
}
