namespace IdentityServer.Telemetry;

/// <summary>
/// Turns the server's stable security log events into counters, so features only log (as they must anyway) and the
/// metrics follow: sign-ins by result (events 2001 signed in, 2002 failed, 2003 locked out) and pruned rows (6001).
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
            switch (eventId.Id)
            {
                case 2001:
                    metrics.SignIn("success");
                    break;
                case 2002:
                    metrics.SignIn("failure");
                    break;
                case 2003:
                    metrics.SignIn("locked_out");
                    break;
                case 6001 when state is IReadOnlyList<KeyValuePair<string, object?>> values:
                    metrics.Pruned("token", Count(values, "Tokens"));
                    metrics.Pruned("authorization", Count(values, "Authorizations"));
                    break;
            }
        }

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
