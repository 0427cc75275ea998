namespace IdentityServer.Data;

/// <summary>
/// Entries a feature needs in every database whatever the configuration (the admin scope and role), ensured on
/// every start after the migrations and before the configured seed, which may refer to them. Register as scoped.
/// </summary>
public interface IBuiltInSeed
{
    Task EnsureAsync(CancellationToken cancellationToken);
}

/// <summary>
/// Thrown when an entry being seeded was created by another instance between our look-up and our insert;
/// the initializer then seeds again and finds it.
/// </summary>
public sealed class SeedConflictException(string message) : Exception(message)
{
    private static readonly HashSet<string> DuplicateCodes = ["DuplicateUserName", "DuplicateEmail", "DuplicateRoleName"];

    /// <summary>Throws when an Identity result failed only because the name is already taken.</summary>
    public static void ThrowIfDuplicate(Microsoft.AspNetCore.Identity.IdentityResult result, string what)
    {
        if (!result.Succeeded && result.Errors.All(e => DuplicateCodes.Contains(e.Code)))
        {
            throw new SeedConflictException($"{what} was created by another instance at the same time");
        }
    }
}
