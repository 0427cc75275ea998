using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace IdentityServer.Tests.Logout;

/// <summary>
/// A relying party's back-channel logout endpoint, as a real Kestrel listener on a free loopback port (the server
/// posts to it over the network, as it would in production). Keeps every logout token it was sent, by path; can be
/// told to answer 500 to the first posts.
/// </summary>
public sealed class LogoutReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _failuresLeft;
    private int _hanging;

    private LogoutReceiver(WebApplication app) => _app = app;

    /// <summary>Logout tokens received, with the path they were posted to, in order.</summary>
    public ConcurrentQueue<(string Path, string Token)> Received { get; } = new();

    /// <summary>How many posts were answered 500.</summary>
    public int Refused { get; private set; }

    public string BaseAddress => _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    public string Url(string path) => BaseAddress.TrimEnd('/') + path;

    public void FailNext(int posts) => _failuresLeft = posts;

    /// <summary>Posts to a path under <c>/hang</c> not yet answered: each waits until <see cref="ReleaseHanging"/>.</summary>
    public int Hanging => Volatile.Read(ref _hanging);

    public void ReleaseHanging() => _release.TrySetResult();

    public IReadOnlyList<string> TokensAt(string path) => [.. Received.Where(r => r.Path == path).Select(r => r.Token)];

    public static async Task<LogoutReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new LogoutReceiver(app);
        app.MapPost("/{**path}", async (HttpContext http) =>
        {
            if (http.Request.Path.StartsWithSegments("/hang"))
            {
                Interlocked.Increment(ref receiver._hanging);
                await receiver._release.Task.WaitAsync(http.RequestAborted).ContinueWith(_ => { });
                Interlocked.Decrement(ref receiver._hanging);
                return Results.StatusCode(StatusCodes.Status503ServiceUnavailable);
            }

            if (Interlocked.Decrement(ref receiver._failuresLeft) >= 0)
            {
                receiver.Refused++;
                return Results.StatusCode(StatusCodes.Status500InternalServerError);
            }

            var form = await http.Request.ReadFormAsync();
            receiver.Received.Enqueue((http.Request.Path.Value!, form["logout_token"].ToString()));
            return Results.Ok();
        });
        await app.StartAsync();
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        ReleaseHanging();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
