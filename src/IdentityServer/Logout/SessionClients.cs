using System.Security.Claims;
using IdentityServer.Accounts;
using IdentityServer.Authorization;
using IdentityServer.Clients;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;
using OpenIddict.Server;

namespace IdentityServer.Logout;

/// <summary>Remembers which clients with a back-channel or front-channel logout URI signed in through which session (<see cref="UserSessionClient"/>).</summary>
public sealed class SessionClients(IServiceScopeFactory scopes, IOpenIddictApplicationManager applications, TimeProvider clock, BackChannelLogoutSender logouts)
{
    /// <summary>
    /// Called as the client is given a code (or a device is approved) through <paramref name="session"/> for
    /// <paramref name="granted"/>. Nothing is written for a client without a logout URI, for a grant without <c>openid</c>
    /// (no identity token, so no <c>sid</c> for a logout to name), nor twice for one session and client.
    /// </summary>
    public async Task RecordAsync(HttpContext http, ClaimsPrincipal session, ClaimsPrincipal granted, string? clientId, OpenIddictServerOptions server,
        CancellationToken ct)
    {
        // An issuer too long to store (a forged Host header when Tokens:Issuer is not set) is not recorded.
        if (SessionClaims.GetSessionId(session) is not { } sessionId || string.IsNullOrEmpty(clientId) || !granted.HasScope(OpenIddictConstants.Scopes.OpenId)
            || granted.GetClaim(OpenIddictConstants.Claims.Subject) is not { } userId
            || ServerIssuer.Of(http, server).AbsoluteUri is not { Length: <= UserSessionClient.IssuerMaxLength } issuer
            || await StoredClientProperties.OfClientAsync(applications, clientId, ct) is not { } properties
            || properties is { BackChannelLogoutUri: null, FrontChannelLogoutUri: null })
        {
            return;
        }

        var frontChannelOnly = properties.BackChannelLogoutUri is null;

        // A context of its own: the request's may hold changes that are not this method's to save.
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var recorded = db.Set<UserSessionClient>().Where(c => c.SessionId == sessionId && c.ClientId == clientId);
        if (await recorded.AnyAsync(ct))
        {
            return;
        }

        // From here on the request going away must not stop halfway: a row left behind for a session that ended would
        // never be made due, and its client never told.
        db.Add(new UserSessionClient
        {
            SessionId = sessionId, ClientId = clientId, UserId = userId, Issuer = issuer, RecordedAt = clock.GetUtcNow().UtcDateTime,
            FrontChannelOnly = frontChannelOnly,
        });
        try
        {
            await db.SaveChangesAsync(CancellationToken.None);
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            return; // recorded by a concurrent request of the same session
        }

        // The session may have ended since this request checked it, too late for the ending to see this row. Touching
        // the session's row waits for an ending still under way (it holds that row's lock) and finds no row once it
        // committed: then the session's clients are made due here, as the ending would have.
        var live = await db.Set<UserSession>().Where(s => s.Id == sessionId)
            .ExecuteUpdateAsync(s => s.SetProperty(x => x.LastSeenAt, x => x.LastSeenAt), CancellationToken.None);
        if (live == 0 && await scope.ServiceProvider.GetRequiredService<LogoutTokenQueue>().MakeDueAsync([sessionId], clock.GetUtcNow().UtcDateTime, CancellationToken.None) > 0)
        {
            logouts.Wake();
        }
    }
}
