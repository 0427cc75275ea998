using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>
/// Passkey sign-ins, each accepted once. ASP.NET Core Identity keeps a sign-in's state (the challenge it issued) only
/// in the browser's short-lived sign-in cookie and does not mark it used: the same assertion, posted again with that
/// cookie, signed in again, and the authenticator's signature counter does not tell (synced passkeys always send 0).
/// So whoever saw one passkey sign-in's form and cookie (a proxy's log, an extension, a saved HAR file) could open
/// sessions of their own for minutes (WebAuthn 13.4.3: the relying party, not the client, makes sure a challenge is
/// used once). What is recorded is the state Identity verified the assertion against, not anything read from the
/// posted credential, whose JSON Identity reads its own way (a second, differently cased <c>response</c> member
/// slipped another challenge past a check of the posted JSON).
/// </summary>
public sealed class UsedPasskeyChallenges(SingleUseRecords records, TimeProvider clock)
{
    /// <summary>
    /// Longer than a sign-in's state lives: Identity's sign-in cookie, which holds it, lasts 5 minutes, and the
    /// authenticator's timeout is shorter.
    /// </summary>
    private static readonly TimeSpan KeptFor = TimeSpan.FromMinutes(15);

    /// <summary>Records the sign-in state of a verified assertion; false if it was used before.</summary>
    public Task<bool> TryUseAsync(string assertionState, CancellationToken ct)
    {
        var hash = Shared.StoredHash.Of(assertionState);
        return records.TryRecordAsync(new UsedPasskeyChallenge { ChallengeHash = hash, ExpiresAt = (clock.GetUtcNow() + KeptFor).UtcDateTime },
            c => c.ChallengeHash == hash, ct);
    }

    /// <summary>Deletes the records past their expiry (the token pruning job); their sign-ins have expired anyway.</summary>
    public Task<int> PruneAsync(CancellationToken ct) => records.PruneAsync<UsedPasskeyChallenge>(ct);
}

/// <summary>
/// Identity's passkey handler, with each verified assertion's sign-in state recorded (<see cref="UsedPasskeyChallenges"/>):
/// a second use of it fails as any failed assertion does.
/// </summary>
public sealed class SingleUsePasskeyHandler(UserManager<ApplicationUser> users, Microsoft.Extensions.Options.IOptions<IdentityPasskeyOptions> options,
    UsedPasskeyChallenges used, ILogger<SingleUsePasskeyHandler> logger) : IPasskeyHandler<ApplicationUser>
{
    private readonly PasskeyHandler<ApplicationUser> _identity = new(users, options);

    public Task<PasskeyCreationOptionsResult> MakeCreationOptionsAsync(PasskeyUserEntity userEntity, HttpContext httpContext) =>
        _identity.MakeCreationOptionsAsync(userEntity, httpContext);

    public Task<PasskeyRequestOptionsResult> MakeRequestOptionsAsync(ApplicationUser? user, HttpContext httpContext) =>
        _identity.MakeRequestOptionsAsync(user, httpContext);

    public Task<PasskeyAttestationResult> PerformAttestationAsync(PasskeyAttestationContext context) => _identity.PerformAttestationAsync(context);

    public async Task<PasskeyAssertionResult<ApplicationUser>> PerformAssertionAsync(PasskeyAssertionContext context)
    {
        var result = await _identity.PerformAssertionAsync(context);
        if (!result.Succeeded || (context.AssertionState is { Length: > 0 } state && await used.TryUseAsync(state, CancellationToken.None)))
        {
            return result;
        }

        logger.LogWarning(AccountEvents.SignInFailed, "Passkey sign-in refused for {UserId}: its assertion was already used", result.User.Id);
        return PasskeyAssertionResult.Fail<ApplicationUser>(new PasskeyException("The passkey assertion was already used."));
    }
}
