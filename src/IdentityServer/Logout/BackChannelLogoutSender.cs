using System.Threading.Channels;
using IdentityServer.Clients;
using IdentityServer.Keys;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Logout;

/// <summary>The <c>BackChannelLogout</c> configuration section.</summary>
public sealed class BackChannelLogoutOptions
{
    public const string Section = "BackChannelLogout";

    /// <summary>How long one post to a client may take.</summary>
    [System.ComponentModel.DataAnnotations.Range(typeof(TimeSpan), "00:00:01", "00:01:00")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Posts per logout token when the client cannot be reached or answers 408, 429 or 5xx.</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 10)]
    public int Attempts { get; set; } = 3;

    /// <summary>The wait before the second attempt, doubled before each later one.</summary>
    [System.ComponentModel.DataAnnotations.Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(2);
}

/// <summary>
/// OpenID Connect Back-Channel Logout 1.0: when a session ends, each client with a back-channel logout URI that signed
/// in through it gets a logout token (a JWT signed with the active signing key, <c>typ</c> <c>logout+jwt</c>, naming the
/// user and the session: <c>sub</c>, <c>sid</c>), posted in the background so that signing out never waits on a client.
/// A client that cannot be reached, or answers 408, 429 or 5xx, is tried again later with a fresh token
/// (<see cref="BackChannelLogoutOptions"/>); the wait holds no sender, and a client is posted to by one sender at a
/// time, so an unreachable client holds up no other. Any other answer is final: 2xx delivered, the rest refused. The
/// queue is in memory: tokens not yet delivered when the process stops are lost (each is logged as it is queued).
/// </summary>
public sealed class BackChannelLogoutSender(
    IServiceScopeFactory scopes,
    IHttpClientFactory httpClients,
    KeyRing keys,
    TimeProvider clock,
    IOptions<BackChannelLogoutOptions> options,
    ILogger<BackChannelLogoutSender> logger) : BackgroundService
{
    public const string HttpClientName = "BackChannelLogout";
    public const string LogoutEvent = "http://schemas.openid.net/event/backchannel-logout";

    /// <summary>How many clients are posted to at once, so that one slow client does not hold up the others.</summary>
    private const int ParallelPosts = 4;

    private readonly Channel<(LogoutNotice Notice, int Attempt)> _queue = Channel.CreateUnbounded<(LogoutNotice, int)>();

    /// <summary>The clients being posted to, each with the tokens waiting for it: one post at a time per client.</summary>
    private readonly Dictionary<string, Queue<(LogoutNotice Notice, int Attempt)>> _busy = new(StringComparer.Ordinal);

    public void Enqueue(IReadOnlyCollection<LogoutNotice> notices)
    {
        foreach (var notice in notices)
        {
            logger.LogInformation(LogoutEvents.LogoutQueued, "Logout token for client {ClientId} queued: session {SessionId} of user {UserId} ended",
                notice.ClientId, notice.SessionId, notice.Subject);
            _queue.Writer.TryWrite((notice, 1));
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Parallel.ForEachAsync(_queue.Reader.ReadAllAsync(stoppingToken),
            new ParallelOptions { MaxDegreeOfParallelism = ParallelPosts, CancellationToken = stoppingToken },
            (item, ct) => DeliverInTurnAsync(item, ct));

    /// <summary>
    /// One client at a time per sender: a token for a client already being posted to waits behind that post, in the same
    /// sender, so a slow or unreachable client (or one with many sessions ending at once) holds at most one sender and
    /// the others go on with the other clients.
    /// </summary>
    private async ValueTask DeliverInTurnAsync((LogoutNotice Notice, int Attempt) item, CancellationToken stoppingToken)
    {
        var client = item.Notice.ClientId;
        lock (_busy)
        {
            if (_busy.TryGetValue(client, out var waiting))
            {
                waiting.Enqueue(item);
                return;
            }

            _busy[client] = new Queue<(LogoutNotice, int)>();
        }

        while (true)
        {
            await DeliverAsync(item.Notice, item.Attempt, stoppingToken);
            lock (_busy)
            {
                var waiting = _busy[client];
                if (waiting.Count == 0 || stoppingToken.IsCancellationRequested)
                {
                    _busy.Remove(client);
                    return;
                }

                item = waiting.Dequeue();
            }
        }
    }

    private async ValueTask DeliverAsync(LogoutNotice notice, int attempt, CancellationToken stoppingToken)
    {
        try
        {
            if (await CurrentUriAsync(notice.ClientId, stoppingToken) is not { } uri)
            {
                logger.LogInformation(LogoutEvents.LogoutSkipped, "Client {ClientId} no longer has a back-channel logout URI: no logout token sent", notice.ClientId);
                return;
            }

            var (delivered, retry, outcome) = await PostAsync(uri, CreateLogoutToken(notice), stoppingToken);
            if (delivered)
            {
                logger.LogInformation(LogoutEvents.LogoutSent, "Logout token for session {SessionId} delivered to client {ClientId}", notice.SessionId, notice.ClientId);
            }
            else if (retry && attempt < options.Value.Attempts)
            {
                RetryLater(notice, attempt, stoppingToken);
            }
            else
            {
                logger.LogWarning(LogoutEvents.LogoutFailed, "Logout token for session {SessionId} not delivered to client {ClientId} at {Endpoint} after {Attempts} attempt(s): {Outcome}",
                    notice.SessionId, notice.ClientId, WithoutQuery(uri), attempt, outcome);
            }
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested)
        {
            // One notice going wrong must not stop the queue.
            logger.LogError(LogoutEvents.LogoutFailed, e, "Logout token for client {ClientId} could not be sent", notice.ClientId);
        }
    }

    /// <summary>Queues the next attempt after the retry delay (doubled for each attempt made), without holding a sender meanwhile.</summary>
    private void RetryLater(LogoutNotice notice, int attempt, CancellationToken stoppingToken)
    {
        var delay = options.Value.RetryDelay * Math.Pow(2, attempt - 1);
        _ = Task.Delay(delay, clock, stoppingToken).ContinueWith(
            _ => _queue.Writer.TryWrite((notice, attempt + 1)), stoppingToken, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
    }

    /// <summary>The client's URI as it is now: a client changed or deleted since the sign-in is not posted to.</summary>
    private async Task<string?> CurrentUriAsync(string clientId, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        return await applications.FindByClientIdAsync(clientId, ct) is { } application
            ? ClientDescriptorMapper.BackChannelLogoutUriOf(await applications.GetPropertiesAsync(application, ct))
            : null;
    }

    /// <summary>One post: whether it was delivered, whether trying again could help, and what happened.</summary>
    private async Task<(bool Delivered, bool Retry, string Outcome)> PostAsync(string uri, string token, CancellationToken stoppingToken)
    {
        var timeout = options.Value.Timeout;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        cancel.CancelAfter(timeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new FormUrlEncodedContent([KeyValuePair.Create("logout_token", token)]) };
            // Only the status matters: the body is not read.
            using var response = await httpClients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            var status = (int)response.StatusCode;
            return (response.IsSuccessStatusCode, status is 408 or 429 or >= 500, $"HTTP {status}");
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !stoppingToken.IsCancellationRequested)
        {
            return (false, true, e is OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0.#} s" : e.Message);
        }
    }

    /// <summary>The URI for the log: a query string or user information may carry something the client considers secret.</summary>
    private static string WithoutQuery(string uri) =>
        Uri.TryCreate(uri, UriKind.Absolute, out var parsed) ? $"{parsed.Scheme}://{parsed.Authority}{parsed.AbsolutePath}" : "(not a URI)";

    /// <summary>The logout token (section 2.4): no nonce, a jti, the logout event, a short lifetime; made afresh for each attempt.</summary>
    private string CreateLogoutToken(LogoutNotice notice)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = notice.Issuer,
            Audience = notice.ClientId,
            IssuedAt = now,
            Expires = now.AddMinutes(2),
            TokenType = "logout+jwt",
            SigningCredentials = keys.ActiveSigningCredentials,
            Claims = new Dictionary<string, object>
            {
                [Claims.Subject] = notice.Subject,
                ["sid"] = notice.SessionId,
                [Claims.JwtId] = Guid.NewGuid().ToString("N"),
                ["events"] = new Dictionary<string, object> { [LogoutEvent] = new Dictionary<string, object>() },
            },
        });
    }
}

public static class LogoutEvents
{
    public static readonly EventId LogoutQueued = new(2101, nameof(LogoutQueued));
    public static readonly EventId LogoutSent = new(2102, nameof(LogoutSent));
    public static readonly EventId LogoutFailed = new(2103, nameof(LogoutFailed));
    public static readonly EventId LogoutSkipped = new(2104, nameof(LogoutSkipped));
}
