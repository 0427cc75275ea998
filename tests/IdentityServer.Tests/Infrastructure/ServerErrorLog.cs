using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// What an in-memory server logged at error level, kept so that a test that meets an unexpected 500 fails with the
/// server's exception in its message: the console output of a test run is not where anyone reads it.
/// </summary>
public sealed class ServerErrorLog : ILoggerProvider
{
    private const int Capacity = 200;
    private readonly ConcurrentQueue<(long Sequence, string Text)> _entries = new();
    private long _sequence;

    /// <summary>The number of the next entry: pass it to <see cref="Since"/> to read what was logged after this moment.</summary>
    public long Mark => Interlocked.Read(ref _sequence);

    public IReadOnlyList<string> Since(long mark) => [.. _entries.Where(entry => entry.Sequence >= mark).Select(entry => entry.Text)];

    public ILogger CreateLogger(string categoryName) => new ErrorLogger(this, categoryName);

    public void Dispose()
    {
    }

    private void Add(string text)
    {
        _entries.Enqueue((Interlocked.Increment(ref _sequence) - 1, text));
        while (_entries.Count > Capacity && _entries.TryDequeue(out _))
        {
        }
    }

    private sealed class ErrorLogger(ServerErrorLog log, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                log.Add($"{logLevel} {category}[{eventId.Id}]: {formatter(state, exception)}{Environment.NewLine}{exception}");
            }
        }
    }
}

/// <summary>
/// Fails a request that got a 500 with what the server logged meanwhile. No test expects a 500 from a fixture's
/// server (the crash tests make their own instances), so a 500 here is a bug to be read, not a status to assert on.
/// </summary>
public sealed class ServerErrorReporter(ServerErrorLog log, HttpMessageHandler inner) : DelegatingHandler(inner)
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var mark = log.Mark;
        var response = await base.SendAsync(request, cancellationToken);
        if (response.StatusCode == HttpStatusCode.InternalServerError)
        {
            throw new HttpRequestException(
                $"{request.Method} {request.RequestUri} got a 500. The server logged:{Environment.NewLine}{string.Join(Environment.NewLine, log.Since(mark))}",
                inner: null, HttpStatusCode.InternalServerError);
        }

        return response;
    }
}
