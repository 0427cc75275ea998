using System.Security.Claims;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Performance;

/// <summary>
/// Codes, device codes, user codes and refresh tokens carry no claim destinations. OpenIddict writes every claim's
/// destinations into them as a map (<c>oi_cl_dstn</c>) and writes the map back onto the claims when it reads them,
/// but nothing here reads those destinations: the token endpoint makes the new tokens' principal afresh
/// (<see cref="Authorization.UserPrincipalFactory.RefreshAsync"/> sets every claim's destinations from its type),
/// the verification page makes a device's principal afresh, and introspection answers with an access token's claims
/// only. Reading and writing the map was about 3.6% of a refresh's CPU (HISTORY.md, twenty-third round), and it
/// made every such token longer. Runs before OpenIddict copies the principal into the token (<c>AttachTokenSubject</c>)
/// and writes the map of the destinations it finds (<c>AttachTokenMetadata</c>).
/// <para>
/// A token made before this has its map among its claims when it is redeemed, and OpenIddict carries every internal
/// (<c>oi_</c>) claim of a redeemed token on to the new principal, so the old map is taken out too: a chain of refresh
/// tokens does not carry it on.
/// </para>
/// </summary>
public sealed class GrantTokenDestinations : IOpenIddictServerHandler<GenerateTokenContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<GenerateTokenContext>()
        .UseSingletonHandler<GrantTokenDestinations>()
        .SetOrder(Protection.AttachTokenSubject.Descriptor.Order - 500)
        .SetType(OpenIddictServerHandlerType.Custom)
        .Build();

    public ValueTask HandleAsync(GenerateTokenContext context)
    {
        // The principal is OpenIddict's copy for this one token (its claims are copies too), so the access and
        // identity tokens made from the same sign-in keep their destinations.
        if (context.TokenType is TokenTypeIdentifiers.Private.AuthorizationCode or TokenTypeIdentifiers.Private.DeviceCode
                or TokenTypeIdentifiers.Private.UserCode or TokenTypeIdentifiers.RefreshToken
            && context.Principal is { } principal)
        {
            foreach (var identity in principal.Identities)
            {
                for (var current = identity; current is not null; current = current.Actor)
                {
                    Claim? earlierMap = null;
                    foreach (var claim in current.Claims)
                    {
                        claim.Properties.Remove(Properties.Destinations);
                        earlierMap = claim.Type == Claims.Private.ClaimDestinationsMap ? claim : earlierMap;
                    }

                    if (earlierMap is not null)
                    {
                        current.RemoveClaim(earlierMap);
                    }
                }
            }
        }

        return ValueTask.CompletedTask;
    }
}
