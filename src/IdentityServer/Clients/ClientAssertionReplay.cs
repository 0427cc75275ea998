using IdentityServer.Data;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Clients;

/// <summary>
/// A client assertion authenticates its client once (OpenID Connect Core 1.0 section 9; RFC 7523 section 3 item 7):
/// its <c>jti</c> is recorded for its client (<see cref="UsedClientAssertion"/>) and a second use is refused with
/// <c>invalid_client</c>. OpenIddict checks the assertion itself (signature with the client's registered keys, <c>typ</c>,
/// <c>iss</c> = <c>sub</c> = the client, <c>aud</c>, <c>exp</c>) but keeps no record of it.
/// </summary>
public static class ClientAssertionReplay
{
    /// <summary>
    /// How far ahead of the server's clock an assertion's <c>exp</c> may be, give or take the clock skew OpenIddict allows
    /// (a client whose clock runs a little ahead makes a 10-minute assertion, as MSAL does). Its record is kept until
    /// then, so an assertion without a bound would be tracked for as long as its client liked.
    /// </summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long a record outlives its assertion's <c>exp</c>: OpenIddict still accepts an assertion for its clock skew
    /// (<see cref="TokenValidationParameters.DefaultClockSkew"/>, 5 minutes) after <c>exp</c>, plus a minute for instances
    /// whose clocks disagree.
    /// </summary>
    public static readonly TimeSpan KeptAfterExpiry = TokenValidationParameters.DefaultClockSkew + TimeSpan.FromMinutes(1);

    public static OpenIddictServerBuilder UseClientAssertionReplayProtection(this OpenIddictServerBuilder server)
    {
        server.Services.TryAddSingleton<SingleUseRecords>();
        server.Services.AddSingleton<UsedClientAssertions>();
        return server.AddEventHandler(RefuseUnrepresentableDates.Descriptor).AddEventHandler(RefuseReusedAssertion.Descriptor);
    }

    /// <summary>
    /// An assertion whose <c>exp</c>, <c>iat</c> or <c>nbf</c> lies outside the dates .NET can hold (year 1 to 9999),
    /// clock skew included, is refused before OpenIddict reads it: OpenIddict converts them without a check and
    /// answered 500. Read without validating anything else; what cannot be read is left to OpenIddict's own checks.
    /// </summary>
    public sealed class RefuseUnrepresentableDates(ILogger<RefuseUnrepresentableDates> logger) : IOpenIddictServerHandler<ProcessAuthenticationContext>
    {
        /// <summary>A day inside both ends, more than any clock skew.</summary>
        private static readonly long Earliest = DateTimeOffset.MinValue.ToUnixTimeSeconds() + 86_400;
        private static readonly long Latest = DateTimeOffset.MaxValue.ToUnixTimeSeconds() - 86_400;

        /// <summary>Only to tell a JWT it may read (format and size) from anything else; stateless, so one serves every request.</summary>
        private static readonly JsonWebTokenHandler Reader = new();

        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessAuthenticationContext>()
            .UseSingletonHandler<RefuseUnrepresentableDates>()
            .SetOrder(OpenIddictServerHandlers.ValidateClientAssertion.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ProcessAuthenticationContext context)
        {
            if (string.IsNullOrEmpty(context.ClientAssertion) || !Reader.CanReadToken(context.ClientAssertion))
            {
                return default;
            }

            JsonWebToken assertion;
            try
            {
                assertion = new JsonWebToken(context.ClientAssertion);
            }
            catch (ArgumentException)
            {
                return default; // not a JWT OpenIddict could read either: its checks refuse it
            }

            foreach (var claim in new[] { Claims.ExpiresAt, Claims.IssuedAt, Claims.NotBefore })
            {
                if (assertion.TryGetPayloadValue<long>(claim, out var seconds) && (seconds < Earliest || seconds > Latest))
                {
                    logger.LogWarning(ClientAssertionEvents.AssertionUntrackable, "Client assertion of {ClientId} refused: its '{Claim}' is out of range", context.ClientId, claim);
                    context.Reject(Errors.InvalidClient, $"The client assertion's '{claim}' is not a date this server can hold.");
                    return default;
                }
            }

            return default;
        }
    }

    /// <summary>
    /// Runs during client authentication at every endpoint that takes a client assertion (token, introspection,
    /// revocation, pushed authorization, device authorization), once OpenIddict has accepted the assertion and the
    /// client (so an assertion it refuses is never recorded), and before any grant is looked at.
    /// </summary>
    public sealed class RefuseReusedAssertion(UsedClientAssertions used, TimeProvider clock, ILogger<RefuseReusedAssertion> logger)
        : IOpenIddictServerHandler<ProcessAuthenticationContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessAuthenticationContext>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireClientAssertionPrincipal>()
            .UseSingletonHandler<RefuseReusedAssertion>()
            .SetOrder(OpenIddictServerHandlers.ValidateClientCertificate.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ProcessAuthenticationContext context)
        {
            var assertion = context.ClientAssertionPrincipal!;
            var clientId = context.ClientId ?? assertion.GetClaim(Claims.Issuer)!;
            var jti = assertion.GetClaim(Claims.JwtId);
            var expires = assertion.GetExpirationDate();

            // OpenIddict already refuses an assertion without exp; without a jti or a near exp one cannot be tracked.
            var untrackable = string.IsNullOrEmpty(jti) ? "The client assertion has no 'jti' claim: each assertion is used once, and its jti tells it apart."
                : expires is null ? "The client assertion has no 'exp' claim."
                : expires.Value - clock.GetUtcNow() > MaxLifetime + TokenValidationParameters.DefaultClockSkew
                    ? $"The client assertion's 'exp' is more than {MaxLifetime.TotalMinutes} minutes ahead."
                : null;
            if (untrackable is not null)
            {
                logger.LogWarning(ClientAssertionEvents.AssertionUntrackable, "Client assertion of {ClientId} refused: {Reason}", clientId, untrackable);
                context.Reject(Errors.InvalidClient, untrackable);
                return;
            }

            if (!await used.TryRecordAsync(clientId, jti!, expires!.Value + KeptAfterExpiry, context.CancellationToken))
            {
                // The jti is not logged: until it expires it is half of what a replay needs.
                logger.LogWarning(ClientAssertionEvents.AssertionReplayed, "Client assertion of {ClientId} refused: it was already used", clientId);
                context.Reject(Errors.InvalidClient, "The client assertion was already used.");
            }
        }
    }
}

/// <summary>The record of used client assertions, by client and <c>jti</c>.</summary>
public sealed class UsedClientAssertions(SingleUseRecords records)
{
    /// <summary>
    /// Records the first use of <paramref name="jti"/> by <paramref name="clientId"/> until <paramref name="keepUntil"/>;
    /// false if it was already recorded.
    /// </summary>
    public Task<bool> TryRecordAsync(string clientId, string jti, DateTimeOffset keepUntil, CancellationToken ct)
    {
        var jtiHash = Shared.StoredHash.Of(jti);
        return records.TryRecordAsync(new UsedClientAssertion { ClientId = clientId, JtiHash = jtiHash, ExpiresAt = keepUntil.UtcDateTime },
            a => a.ClientId == clientId && a.JtiHash == jtiHash, ct);
    }

    /// <summary>Deletes the records past their expiry (the token pruning job); their assertions are refused as expired anyway.</summary>
    public Task<int> PruneAsync(CancellationToken ct) => records.PruneAsync<UsedClientAssertion>(ct);
}

public static class ClientAssertionEvents
{
    public static readonly EventId AssertionReplayed = new(5007, nameof(AssertionReplayed));
    public static readonly EventId AssertionUntrackable = new(5008, nameof(AssertionUntrackable));
}
