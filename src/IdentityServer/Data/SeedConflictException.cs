using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Data;

/// <summary>
/// Thrown when an entry being seeded was created by another instance between our look-up and our insert;
/// the initializer then seeds again and finds it.
/// </summary>
public sealed class SeedConflictException(string message) : Exception(message)
{
    private static readonly HashSet<string> DuplicateCodes = ["DuplicateUserName", "DuplicateEmail", "DuplicateRoleName"];

    /// <summary>Throws when an Identity result failed only because the name is already taken.</summary>
    public static void ThrowIfDuplicate(IdentityResult result, string what)
    {
        if (!result.Succeeded && result.Errors.All(e => DuplicateCodes.Contains(e.Code)))
        {
            throw new SeedConflictException($"{what} was created by another instance at the same time");
        }
    }
}
