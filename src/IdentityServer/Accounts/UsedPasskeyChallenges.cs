using System.Text.Json;
using IdentityServer.Data;
using Microsoft.IdentityModel.Tokens;

namespace IdentityServer.Accounts;

/// <summary>
/// Passkey sign-ins, each accepted once. ASP.NET Core Identity keeps a sign-in's challenge only in the browser's
/// short-lived sign-in cookie and does not mark it used: the same assertion, posted again with that cookie, signed in
/// again, and the authenticator's signature counter does not tell (synced passkeys always send 0). So whoever saw one
/// passkey sign-in's form and cookie (a proxy's log, an extension, a saved HAR file) could open sessions of their own
/// for minutes (WebAuthn 13.4.3: the relying party, not the client, makes sure a challenge is used once).
/// </summary>
public sealed class UsedPasskeyChallenges(SingleUseRecords records, TimeProvider clock)
{
    /// <summary>
    /// Longer than a sign-in's challenge lives: Identity's sign-in cookie, which holds it, lasts 5 minutes, and the
    /// authenticator's timeout is shorter.
    /// </summary>
    private static readonly TimeSpan KeptFor = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Records the challenge of a verified assertion (the credential as the browser posted it); false if it was used
    /// before, or cannot be read.
    /// </summary>
    public Task<bool> TryUseAsync(string credentialJson, CancellationToken ct)
    {
        if (ChallengeOf(credentialJson) is not { } challenge)
        {
            return Task.FromResult(false);
        }

        var hash = Shared.StoredHash.Of(challenge);
        return records.TryRecordAsync(new UsedPasskeyChallenge { ChallengeHash = hash, ExpiresAt = (clock.GetUtcNow() + KeptFor).UtcDateTime },
            c => c.ChallengeHash == hash, ct);
    }

    /// <summary>Deletes the records past their expiry (the token pruning job); their sign-ins have expired anyway.</summary>
    public Task<int> PruneAsync(CancellationToken ct) => records.PruneAsync<UsedPasskeyChallenge>(ct);

    /// <summary>The challenge in the assertion's client data (<c>response.clientDataJSON</c>, base64url JSON).</summary>
    private static string? ChallengeOf(string credentialJson)
    {
        try
        {
            using var credential = JsonDocument.Parse(credentialJson);
            if (credential.RootElement.TryGetProperty("response", out var response) && response.ValueKind == JsonValueKind.Object
                && response.TryGetProperty("clientDataJSON", out var encoded) && encoded.ValueKind == JsonValueKind.String)
            {
                using var clientData = JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(encoded.GetString()!));
                return clientData.RootElement.TryGetProperty("challenge", out var challenge) && challenge.ValueKind == JsonValueKind.String
                    ? challenge.GetString() is { Length: > 0 } value ? value : null
                    : null;
            }
        }
        catch (Exception e) when (e is JsonException or FormatException or ArgumentException)
        {
        }

        return null;
    }
}
