using System.Collections.Frozen;
using System.Security.Claims;
using IdentityServer.Authorization;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Performance;

/// <summary>
/// Codes (authorization, device and user codes) and refresh tokens carry what redeeming them needs, not what the
/// token endpoint makes afresh. Left out:
/// <list type="bullet">
/// <item>OpenIddict's map of every claim's destinations (<c>oi_cl_dstn</c>), which it writes into these tokens and back
/// onto each claim when it reads them: the token endpoint sets every claim's destinations again
/// (<see cref="UserPrincipalFactory.RefreshAsync"/>), and introspection answers with an access token's claims only.</item>
/// <item>The user's claims (name, email, roles...): the token endpoint reads them from the account at every redemption.</item>
/// <item>In refresh tokens, what only a code's redemption checks (its redirect URI, PKCE challenge and nonce), which
/// OpenIddict carries on from the code: a refreshed identity token has no nonce anyway.</item>
/// </list>
/// Every byte of these tokens is encrypted, signed, encoded, and at redemption decoded, checked, decrypted and parsed:
/// the map alone was about 3.6% of a refresh's CPU (HISTORY.md, twenty-third round) and half of a refresh token. Runs
/// before OpenIddict copies the principal into the token (<c>AttachTokenSubject</c>) and writes the map of the
/// destinations it finds (<c>AttachTokenMetadata</c>). A token made before this is redeemed as before, and OpenIddict
/// carries every internal (<c>oi_</c>) claim of a redeemed token on to the new principal, the old map among them, so
/// that is taken out here too.
/// </summary>
public sealed class LeanGrantTokens : IOpenIddictServerHandler<GenerateTokenContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<GenerateTokenContext>()
        .UseSingletonHandler<LeanGrantTokens>()
        .SetOrder(Protection.AttachTokenSubject.Descriptor.Order - 500)
        .SetType(OpenIddictServerHandlerType.Custom)
        .Build();

    private static readonly FrozenSet<string> LeftOutOfCodes =
        UserPrincipalFactory.UserClaimTypes.Append(Claims.Private.ClaimDestinationsMap).ToFrozenSet(StringComparer.Ordinal);

    private static readonly FrozenSet<string> LeftOutOfRefreshTokens = LeftOutOfCodes
        .Concat([Claims.Private.RedirectUri, Claims.Private.CodeChallenge, Claims.Private.CodeChallengeMethod, Claims.Private.Nonce])
        .ToFrozenSet(StringComparer.Ordinal);

    public ValueTask HandleAsync(GenerateTokenContext context)
    {
        var leftOut = context.TokenType switch
        {
            TokenTypeIdentifiers.Private.AuthorizationCode or TokenTypeIdentifiers.Private.DeviceCode
                or TokenTypeIdentifiers.Private.UserCode => LeftOutOfCodes,
            TokenTypeIdentifiers.RefreshToken => LeftOutOfRefreshTokens,
            _ => null,
        };
        if (leftOut is null || context.Principal is not { } principal)
        {
            return ValueTask.CompletedTask;
        }

        // The principal is OpenIddict's copy for this one token (its claims are copies too), so the access and
        // identity tokens made from the same sign-in keep their claims and destinations.
        foreach (var identity in principal.Identities)
        {
            for (var current = identity; current is not null; current = current.Actor)
            {
                List<Claim>? removed = null;
                foreach (var claim in current.Claims)
                {
                    claim.Properties.Remove(Properties.Destinations);
                    if (leftOut.Contains(claim.Type))
                    {
                        (removed ??= []).Add(claim);
                    }
                }

                foreach (var claim in removed ?? [])
                {
                    current.RemoveClaim(claim);
                }
            }
        }

        return ValueTask.CompletedTask;
    }
}
