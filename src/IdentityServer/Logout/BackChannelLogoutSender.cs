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

    /// <summary>Posts per logout token when the client cannot be reached or answers 5xx.</summary>
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
/// A client that cannot be reached or answers 5xx is tried again (<see cref="BackChannelLogoutOptions"/>); one that
/// answers 4xx has refused the token, and is not. The queue is in memory: tokens not yet delivered when the process
/// stops are lost (logged as they are queued).
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

    private readonly Channel<LogoutNotice> _queue = Channel.CreateUnbounded<LogoutNotice>(new UnboundedChannelOptions { SingleReader = false });

    public void Enqueue(IReadOnlyCollection<LogoutNotice> notices)
    {
        foreach (var notice in notices)
        {
            logger.LogInformation(LogoutEvents.LogoutQueued, "Logout token for client {ClientId} queued: session {SessionId} of user {UserId} ended",
                notice.ClientId, notice.SessionId, notice.Subject);
            _queue.Writer.TryWrite(notice);
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Parallel.ForEachAsync(_queue.Reader.ReadAllAsync(stoppingToken),
            new ParallelOptions { MaxDegreeOfParallelism = ParallelPosts, CancellationToken = stoppingToken }, DeliverAsync);

    private async ValueTask DeliverAsync(LogoutNotice notice, CancellationToken stoppingToken)
    {
        try
        {
            if (await CurrentUriAsync(notice.ClientId, stoppingToken) is not { } uri)
            {
                logger.LogInformation(LogoutEvents.LogoutSkipped, "Client {ClientId} no longer has a back-channel logout URI: no logout token sent", notice.ClientId);
                return;
            }

            await PostAsync(notice, uri, CreateLogoutToken(notice), stoppingToken);
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested)
        {
            // One notice going wrong must not stop the queue.
            logger.LogError(LogoutEvents.LogoutFailed, e, "Logout token for client {ClientId} could not be sent", notice.ClientId);
        }
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

    private async Task PostAsync(LogoutNotice notice, string uri, string token, CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var http = httpClients.CreateClient(HttpClientName);
        string outcome = "no answer";
        for (var attempt = 1; attempt <= settings.Attempts; attempt++)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            timeout.CancelAfter(settings.Timeout);
            try
            {
                using var response = await http.PostAsync(uri, new FormUrlEncodedContent([KeyValuePair.Create("logout_token", token)]), timeout.Token);
                if (response.IsSuccessStatusCode)
                {
                    logger.LogInformation(LogoutEvents.LogoutSent, "Logout token for session {SessionId} delivered to client {ClientId}", notice.SessionId, notice.ClientId);
                    return;
                }

                outcome = $"HTTP {(int)response.StatusCode}";
                if ((int)response.StatusCode < 500)
                {
                    break; // The client refused this token; sending it again would not change that.
                }
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !stoppingToken.IsCancellationRequested)
            {
                outcome = e is OperationCanceledException ? $"no answer within {settings.Timeout.TotalSeconds:0.#} s" : e.Message;
            }

            if (attempt < settings.Attempts)
            {
                await Task.Delay(settings.RetryDelay * Math.Pow(2, attempt - 1), clock, stoppingToken);
            }
        }

        logger.LogWarning(LogoutEvents.LogoutFailed, "Logout token for session {SessionId} not delivered to client {ClientId} at {Uri}: {Outcome}",
            notice.SessionId, notice.ClientId, uri, outcome);
    }

    /// <summary>The logout token (section 2.4): no nonce, a jti, the logout event, a short lifetime.</summary>
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
