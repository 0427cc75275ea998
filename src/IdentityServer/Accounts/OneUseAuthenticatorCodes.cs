using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;

namespace IdentityServer.Accounts;

/// <summary>
/// The authenticator app's codes (RFC 6238), each accepted once. ASP.NET Core Identity's provider accepts a code as
/// long as its 30-second step is within 90 seconds of now, however often it is typed, so an observed or phished code
/// signed in again. RFC 6238 (5.2) asks the verifier not to accept a code twice: the step of the last code accepted
/// is kept in the user's tokens table (no schema change), tagged with the key it was for (a new key starts afresh),
/// and only a later step is accepted after it. It is written directly, not through the user manager, which would
/// rewrite the user's row (and its concurrency stamp, the admin API's ETag) on every sign-in; the write succeeds only
/// if the stored step is still the one read, so two requests racing with one code cannot both pass.
/// </summary>
public sealed class OneUseAuthenticatorCodes(TimeProvider clock, ApplicationDbContext db) : IUserTwoFactorTokenProvider<ApplicationUser>
{
    private const string TokenStore = "[OneUseAuthenticatorCodes]";
    private const string LastAcceptedStep = "LastAcceptedStep";

    /// <summary>Steps of 30 seconds either side of now that are accepted, as Identity's own provider does.</summary>
    private const int Window = 2;

    public async Task<bool> CanGenerateTwoFactorTokenAsync(UserManager<ApplicationUser> manager, ApplicationUser user) =>
        !string.IsNullOrWhiteSpace(await manager.GetAuthenticatorKeyAsync(user));

    /// <summary>The app computes the codes; the server never sends one.</summary>
    public Task<string> GenerateAsync(string purpose, UserManager<ApplicationUser> manager, ApplicationUser user) => Task.FromResult(string.Empty);

    public async Task<bool> ValidateAsync(string purpose, string token, UserManager<ApplicationUser> manager, ApplicationUser user)
    {
        var key = await manager.GetAuthenticatorKeyAsync(user);
        if (string.IsNullOrWhiteSpace(key) || token.Length != 6 || !token.All(char.IsAsciiDigit) || Base32(key) is not { } secret)
        {
            return false;
        }

        var now = clock.GetUtcNow().ToUnixTimeSeconds() / 30;
        long? matched = null;
        for (var step = now - Window; step <= now + Window && matched is null; step++)
        {
            if (CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Code(secret, step)), Encoding.ASCII.GetBytes(token)))
            {
                matched = step;
            }
        }

        if (matched is not { } accepted)
        {
            return false;
        }

        var keyTag = Convert.ToHexString(SHA256.HashData(secret), 0, 4);
        var stored = await LastAccepted(user.Id).AsNoTracking().Select(t => t.Value).SingleOrDefaultAsync();
        if (stored?.Split(':') is [var lastStep, var tag] && tag == keyTag
            && long.TryParse(lastStep, CultureInfo.InvariantCulture, out var last) && last >= accepted)
        {
            return false;
        }

        var value = string.Create(CultureInfo.InvariantCulture, $"{accepted}:{keyTag}");
        if (stored is not null)
        {
            return await LastAccepted(user.Id).Where(t => t.Value == stored).ExecuteUpdateAsync(set => set.SetProperty(t => t.Value, value)) == 1;
        }

        var row = db.UserTokens.Add(new IdentityUserToken<string> { UserId = user.Id, LoginProvider = TokenStore, Name = LastAcceptedStep, Value = value });
        try
        {
            await db.SaveChangesAsync();
            return true;
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            // Another request stored its step first.
            row.State = EntityState.Detached;
            return false;
        }
    }

    private IQueryable<IdentityUserToken<string>> LastAccepted(string userId) =>
        db.UserTokens.Where(t => t.UserId == userId && t.LoginProvider == TokenStore && t.Name == LastAcceptedStep);

    /// <summary>RFC 6238 with HMAC-SHA1 and six digits, as authenticator apps compute it.</summary>
    private static string Code(byte[] secret, long step)
    {
        Span<byte> counter = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(counter, step);
        Span<byte> hash = stackalloc byte[20];
        HMACSHA1.HashData(secret, counter, hash);
        var offset = hash[^1] & 0x0f;
        var binary = ((hash[offset] & 0x7f) << 24) | (hash[offset + 1] << 16) | (hash[offset + 2] << 8) | hash[offset + 3];
        return (binary % 1_000_000).ToString("D6", CultureInfo.InvariantCulture);
    }

    /// <summary>The key as Identity stores it (RFC 4648 base32); null if it is not.</summary>
    private static byte[]? Base32(string key)
    {
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        var output = new List<byte>(key.Length * 5 / 8);
        int buffer = 0, bits = 0;
        foreach (var c in key.TrimEnd('='))
        {
            var value = alphabet.IndexOf(char.ToUpperInvariant(c), StringComparison.Ordinal);
            if (value < 0)
            {
                return null;
            }

            buffer = (buffer << 5) | value;
            bits += 5;
            if (bits >= 8)
            {
                output.Add((byte)(buffer >> (bits - 8)));
                bits -= 8;
            }
        }

        return [.. output];
    }
}
