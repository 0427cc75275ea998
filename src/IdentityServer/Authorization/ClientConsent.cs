using System.Collections.Immutable;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization;

/// <summary>
/// A client's consent type and the user's remembered consents to it (valid permanent authorizations holding every
/// requested scope): what the authorization page and the device verification page both decide on.
/// </summary>
public sealed record ClientConsent(string? ConsentType, IReadOnlyList<object> Remembered)
{
    public const string AdministratorGrantMissing = "An administrator must grant this application access.";

    /// <summary>
    /// An external-consent client is only for the users an administrator granted it to (a permanent authorization);
    /// the user cannot grant it themselves, whichever flow asks.
    /// </summary>
    public bool NeedsAdministratorGrant => ConsentType == ConsentTypes.External && Remembered.Count == 0;

    public static async Task<ClientConsent> FindAsync(IOpenIddictApplicationManager applications, IOpenIddictAuthorizationManager authorizations,
        object application, string userId, ImmutableArray<string> scopes, CancellationToken cancellationToken)
    {
        var applicationId = await applications.GetIdAsync(application, cancellationToken);
        var remembered = await authorizations.FindAsync(subject: userId, client: applicationId!, status: Statuses.Valid,
            type: AuthorizationTypes.Permanent, scopes, cancellationToken).ToListAsync(cancellationToken);
        return new(await applications.GetConsentTypeAsync(application, cancellationToken), remembered);
    }
}
