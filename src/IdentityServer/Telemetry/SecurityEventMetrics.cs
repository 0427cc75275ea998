using IdentityServer.Accounts;
using IdentityServer.Jobs;
using IdentityServer.Logout;

namespace IdentityServer.Telemetry;

/// <summary>
/// Turns the server's stable security log events into counters, so features only log (as they must anyway) and the
/// metrics follow: sign-ins by result (AccountEvents.SignedIn, SignInFailed, LockedOut), pruned rows (JobEvents.TokensPruned)
/// and back-channel logout posts (LogoutEvents).
/// Sees only the server's own categories (<c>IdentityServer.*</c>), at Information and above, whatever the console's level.
/// </summary>
public sealed class SecurityEventMetrics(ServerMetrics metrics) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new EventCounter(metrics);

    public void Dispose()
    {
    }

    private sealed class EventCounter(ServerMetrics metrics) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == AccountEvents.SignedIn.Id)
            {
                metrics.SignIn("success");
            }
            else if (eventId.Id == AccountEvents.SignInFailed.Id)
            {
                metrics.SignIn("failure");
            }
            else if (eventId.Id == AccountEvents.LockedOut.Id)
            {
                metrics.SignIn("locked_out");
            }
            else if (LogoutResult(eventId.Id) is { } result)
            {
                metrics.LogoutToken(result);
            }
            else if (eventId.Id == JobEvents.TokensPruned.Id && state is IReadOnlyList<KeyValuePair<string, object?>> values)
            {
                metrics.Pruned("token", Count(values, "Tokens"));
                metrics.Pruned("authorization", Count(values, "Authorizations"));
                metrics.Pruned("session", Count(values, "Sessions"));
                metrics.Pruned("client_assertion", Count(values, "ClientAssertions"));
                metrics.Pruned("dpop_proof", Count(values, "DpopProofs"));
                metrics.Pruned("passkey_challenge", Count(values, "PasskeyChallenges"));
            }
        }

        private static string? LogoutResult(int eventId) =>
            eventId == LogoutEvents.LogoutSent.Id ? "delivered"
            : eventId == LogoutEvents.LogoutRetrying.Id ? "retrying"
            : eventId == LogoutEvents.LogoutFailed.Id ? "failed"
            : eventId == LogoutEvents.LogoutSkipped.Id ? "skipped"
            : null;

        private static long Count(IReadOnlyList<KeyValuePair<string, object?>> values, string name)
        {
            foreach (var (key, value) in values)
            {
                if (key == name && value is IConvertible number)
                {
                    return number.ToInt64(System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            return 0;
        }
    }
}
