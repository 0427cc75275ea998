namespace IdentityServer.Data;

/// <summary>
/// Entries a feature needs in every database whatever the configuration (the admin scope and role), ensured on
/// every start after the migrations and before the configured seed, which may refer to them. Register as scoped.
/// </summary>
public interface IBuiltInSeed
{
    Task EnsureAsync(CancellationToken cancellationToken);
}
