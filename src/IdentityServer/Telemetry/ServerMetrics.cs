using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using IdentityServer.Keys;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Telemetry;

/// <summary>
/// The server's own instruments (meter <c>IdentityServer</c>). Every tag has a bounded set of values. One meter for the
/// process, never disposed: instruments of one name from several hosts in a process (tests) would otherwise stop each
/// other's streams when a host shuts down.
/// </summary>
public sealed class ServerMetrics
{
    public const string MeterName = "IdentityServer";

    private static readonly HashSet<string> KnownGrantTypes = new(StringComparer.Ordinal)
    {
        GrantTypes.AuthorizationCode, GrantTypes.RefreshToken, GrantTypes.ClientCredentials, GrantTypes.DeviceCode,
        GrantTypes.TokenExchange, GrantTypes.Password, GrantTypes.Implicit,
    };

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> TokensIssued = Meter.CreateCounter<long>("identityserver.tokens.issued", "{token}",
        "Tokens issued by the token endpoint, by grant type, client and token type.");

    private static readonly Counter<long> TokenErrors = Meter.CreateCounter<long>("identityserver.token.errors", "{response}",
        "Error responses of the token endpoint, by OAuth error code and grant type.");

    private static readonly Counter<long> SignIns = Meter.CreateCounter<long>("identityserver.sign_ins", "{attempt}",
        "Password sign-ins on the login page, by result (success, failure, locked_out).");

    private static readonly Counter<long> PrunedRows = Meter.CreateCounter<long>("identityserver.pruned", "{row}",
        "Rows removed by the pruning job, by kind (token, authorization, session, client_assertion).");

    private static readonly Counter<long> LogoutTokens = Meter.CreateCounter<long>("identityserver.logout_tokens", "{token}",
        "Back-channel logout token posts, by result (delivered, retrying, failed, skipped).");

    private static readonly Histogram<double> EndpointDuration = Meter.CreateHistogram<double>("identityserver.endpoint.duration", "s",
        "Time to answer a request, by protocol endpoint or page.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });

    private static readonly Histogram<int> TokenWriteBatchSize = Meter.CreateHistogram<int>("identityserver.token_writes.batch_size", "{entry}",
        "Token entries written together (inserted, or updated when redeemed) by the group-commit writer, per commit.",
        advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256] });

    private static readonly Histogram<double> TokenWriteDuration = Meter.CreateHistogram<double>("identityserver.token_writes.duration", "s",
        "Time the group-commit writer took to write and commit one batch of token entries, which token requests wait for.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] });

    /// <summary>The key rings of the hosts running in this process (one outside tests), each until its host stops.</summary>
    private static readonly ConcurrentDictionary<object, KeyRing> KeyRings = new();

    private static readonly ObservableGauge<double> KeyRotationOverdue = Meter.CreateObservableGauge("identityserver.keys.rotation_overdue",
        () => KeyRings.Values.SelectMany(keys => keys.RotationOverdue()
            .Select(use => new Measurement<double>(use.Overdue.TotalSeconds, new KeyValuePair<string, object?>("use", use.Use)))),
        "s", "How late the next key of each use (sig, mac, enc) is to be stored: 0 while rotation keeps to its schedule.");

    /// <summary>Reports the key ring's <see cref="KeyRing.RotationOverdue"/> until the returned object is disposed.</summary>
    public IDisposable ObserveKeyRotation(KeyRing keys)
    {
        var registration = new KeyRingRegistration();
        KeyRings[registration] = keys;
        return registration;
    }

    private sealed class KeyRingRegistration : IDisposable
    {
        public void Dispose() => KeyRings.TryRemove(this, out _);
    }

    /// <summary>Self-registered clients share one <c>client_id</c> value: anyone may register as many as they like, each a new series.</summary>
    public const string SelfRegisteredClients = "(self-registered)";

    public void TokenIssued(string? grantType, string? clientId, string tokenType) =>
        TokensIssued.Add(1, new TagList
        {
            { "grant_type", GrantType(grantType) },
            { "client_id", clientId is null ? "" : clientId.StartsWith(Registration.RegistrationEndpoint.ClientIdPrefix, StringComparison.Ordinal) ? SelfRegisteredClients : clientId },
            { "token_type", tokenType },
        });

    public void TokenError(string error, string? grantType) =>
        TokenErrors.Add(1, new TagList { { "error", error }, { "grant_type", GrantType(grantType) } });

    public void SignIn(string result) => SignIns.Add(1, new KeyValuePair<string, object?>("result", result));

    public void LogoutToken(string result) => LogoutTokens.Add(1, new KeyValuePair<string, object?>("result", result));

    public void Pruned(string kind, long count)
    {
        if (count > 0)
        {
            PrunedRows.Add(count, new KeyValuePair<string, object?>("kind", kind));
        }
    }

    /// <summary>One batch of the group-commit writer: its size, how long it took, and whether it committed (<c>committed</c>, <c>failed</c>).</summary>
    public void TokenEntriesWritten(int entries, double seconds, bool committed)
    {
        var outcome = new KeyValuePair<string, object?>("outcome", committed ? "committed" : "failed");
        TokenWriteBatchSize.Record(entries, outcome);
        TokenWriteDuration.Record(seconds, outcome);
    }

    public void EndpointAnswered(string endpoint, int statusCode, double seconds) =>
        EndpointDuration.Record(seconds, new TagList { { "endpoint", endpoint }, { "http.response.status_code", statusCode } });

    /// <summary>Unknown grant types (anyone can send any string) are counted as <c>other</c>.</summary>
    private static string GrantType(string? grantType) =>
        grantType is null ? "" : KnownGrantTypes.Contains(grantType) ? grantType : "other";
}
