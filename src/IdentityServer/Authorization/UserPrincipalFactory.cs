using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Security.Claims;
using IdentityServer.Accounts;
using Microsoft.AspNetCore.Identity;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization;

/// <summary>
/// The one place that turns a user into the principal tokens are made from: which claims, for which scopes,
/// and whether each goes into the access token, the id token, or both.
/// </summary>
public sealed class UserPrincipalFactory(IServiceProvider services, IOpenIddictScopeManager scopes)
{
    /// <summary>Resolved on first use: a machine client's principal needs no user manager (it is costly to build).</summary>
    private UserManager<ApplicationUser> users => services.GetRequiredService<UserManager<ApplicationUser>>();

    /// <summary>Claims that describe the user, replaced with current values whenever tokens are refreshed, and the scope each is given under.</summary>
    private static readonly FrozenDictionary<string, string> ScopeOfUserClaim = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [Claims.Name] = Scopes.Profile,
        [Claims.PreferredUsername] = Scopes.Profile,
        [Claims.Email] = Scopes.Email,
        [Claims.EmailVerified] = Scopes.Email,
        [Claims.Role] = Scopes.Roles,
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>The claims that describe the user: read from the account whenever tokens are made, so codes and refresh tokens need not carry them.</summary>
    public static IEnumerable<string> UserClaimTypes => ScopeOfUserClaim.Keys;

    /// <summary>A new principal at the authorization or verification endpoint: the user, the granted scopes, the sign-in.</summary>
    public async Task<ClaimsPrincipal> CreateAsync(ApplicationUser user, ImmutableArray<string> grantedScopes, ClaimsPrincipal session, CancellationToken ct)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, user.Id);
        foreach (var claim in session.Claims.Where(SessionClaims.IsSessionClaim))
        {
            identity.AddClaim(new Claim(claim.Type, claim.Value, claim.ValueType));
        }

        var principal = new ClaimsPrincipal(identity);
        principal.SetScopes(grantedScopes);
        principal.SetResources(await scopes.ListResourcesAsync(grantedScopes, ct).ToListAsync(ct));
        await AddUserClaimsAsync(identity, user, grantedScopes);
        SetDestinations(identity, DestinationsOf);
        return principal;
    }

    /// <summary>
    /// The principal for a token issued from a code, a refresh token or a device code: everything the grant carried
    /// (subject, scopes, audiences, authorization, sign-in time) stays; the user's claims are read afresh.
    /// </summary>
    public async Task<ClaimsPrincipal> RefreshAsync(ClaimsPrincipal granted, ApplicationUser user)
    {
        var identity = new ClaimsIdentity(granted.Claims.Where(c => !ScopeOfUserClaim.ContainsKey(c.Type)),
            TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        await AddUserClaimsAsync(identity, user, granted.GetScopes());
        SetDestinations(identity, DestinationsOf);
        return new ClaimsPrincipal(identity);
    }

    /// <summary>
    /// The principal of an access token issued by token exchange (Authorization/TokenExchange): the subject token's
    /// user and authorization, the narrowed scopes and audiences, the user's claims read afresh, and the actors.
    /// Nothing for an identity token: none is issued.
    /// </summary>
    public async Task<ClaimsPrincipal> CreateExchangedAsync(ClaimsPrincipal subject, ClaimsPrincipal? actor, ApplicationUser user,
        ImmutableArray<string> grantedScopes, IEnumerable<string> audiences)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, user.Id);
        if (subject.GetAuthorizationId() is { } authorizationId)
        {
            identity.SetAuthorizationId(authorizationId);
        }

        if (TokenExchange.ActClaim(subject, actor) is { } act)
        {
            identity.SetClaim(TokenExchange.ActorClaim, act);
        }

        var principal = new ClaimsPrincipal(identity);
        principal.SetScopes(grantedScopes);
        principal.SetResources(audiences);
        await AddUserClaimsAsync(identity, user, grantedScopes);
        SetDestinations(identity, static claim => ScopeOfUserClaim.ContainsKey(claim.Type) || claim.Type == TokenExchange.ActorClaim ? AccessTokenOnly : null);
        return principal;
    }

    /// <summary>The principal of a machine client (client credentials): the client is the subject.</summary>
    public async Task<ClaimsPrincipal> CreateForClientAsync(string clientId, string? displayName, ImmutableArray<string> grantedScopes, CancellationToken ct)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, clientId);
        identity.SetClaim(Claims.Name, displayName ?? clientId);
        var principal = new ClaimsPrincipal(identity);
        principal.SetScopes(grantedScopes);
        principal.SetResources(await scopes.ListResourcesAsync(grantedScopes, ct).ToListAsync(ct));
        SetDestinations(identity, static _ => AccessTokenOnly);
        return principal;
    }

    /// <summary>The userinfo response: the subject and the claims of the scopes the access token carries.</summary>
    public async Task<Dictionary<string, object>> GetUserInfoAsync(ApplicationUser user, ClaimsPrincipal accessToken)
    {
        var identity = new ClaimsIdentity();
        await AddUserClaimsAsync(identity, user, accessToken.GetScopes());
        var info = new Dictionary<string, object>(StringComparer.Ordinal) { [Claims.Subject] = user.Id };
        foreach (var group in identity.Claims.GroupBy(c => c.Type))
        {
            info[group.Key] = group.Key == Claims.Role
                ? group.Select(c => c.Value).ToArray()
                : group.Key == Claims.EmailVerified ? bool.Parse(group.First().Value) : group.First().Value;
        }

        return info;
    }

    /// <summary>Takes out of <paramref name="principal"/> the user claims of any scope not in <paramref name="scopes"/>.</summary>
    public static void RemoveUserClaimsOutside(ClaimsPrincipal principal, ImmutableArray<string> scopes)
    {
        foreach (var (type, scope) in ScopeOfUserClaim)
        {
            if (!scopes.Contains(scope))
            {
                principal.RemoveClaims(type);
            }
        }
    }

    private async Task AddUserClaimsAsync(ClaimsIdentity identity, ApplicationUser user, ImmutableArray<string> grantedScopes)
    {
        if (grantedScopes.Contains(Scopes.Profile))
        {
            identity.SetClaim(Claims.Name, user.DisplayName ?? user.UserName);
            identity.SetClaim(Claims.PreferredUsername, user.UserName);
        }

        if (grantedScopes.Contains(Scopes.Email) && user.Email is not null)
        {
            identity.SetClaim(Claims.Email, user.Email);
            identity.AddClaim(new Claim(Claims.EmailVerified, user.EmailConfirmed ? "true" : "false", ClaimValueTypes.Boolean));
        }

        if (grantedScopes.Contains(Scopes.Roles))
        {
            identity.SetClaims(Claims.Role, [.. await users.GetRolesAsync(user)]);
        }
    }

    /// <summary>
    /// User claims are only added under the scope that grants them, so each goes to both tokens; how and when
    /// the user signed in, and the session (<c>sid</c>, which back-channel logout tokens name), are for the client
    /// (id token), not for APIs; Identity's security stamp goes nowhere.
    /// </summary>
    private static string? DestinationsOf(Claim claim) => claim.Type switch
    {
        _ when ScopeOfUserClaim.ContainsKey(claim.Type) => BothTokens,
        Claims.AuthenticationTime or Claims.AuthenticationMethodReference or Claims.AuthenticationContextReference or SessionClaims.SessionId => IdentityTokenOnly,
        "AspNet.Identity.SecurityStamp" => null,
        _ => AccessTokenOnly,
    };

    // A claim's destinations are a JSON array in one of its properties. OpenIddict's Claim.SetDestinations writes it
    // afresh for every claim (a JSON writer and its buffers each time: 8% of a refresh's allocations), so each of
    // the few sets used here is written once, by OpenIddict itself, and the same string is given to every claim.
    private static readonly string AccessTokenOnly = Serialized(Destinations.AccessToken);
    private static readonly string IdentityTokenOnly = Serialized(Destinations.IdentityToken);
    private static readonly string BothTokens = Serialized(Destinations.AccessToken, Destinations.IdentityToken);

    private static string Serialized(params string[] destinations) =>
        new Claim("destinations", string.Empty).SetDestinations(destinations).Properties[Properties.Destinations];

    /// <summary>What <c>ClaimsIdentity.SetDestinations(selector)</c> does, with the serialized sets above (null: none).</summary>
    private static void SetDestinations(ClaimsIdentity identity, Func<Claim, string?> destinations)
    {
        foreach (var claim in identity.Claims)
        {
            if (destinations(claim) is { } serialized)
            {
                claim.Properties[Properties.Destinations] = serialized;
            }
            else
            {
                claim.Properties.Remove(Properties.Destinations);
            }
        }
    }
}
