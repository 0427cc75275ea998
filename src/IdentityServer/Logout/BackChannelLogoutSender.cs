using IdentityServer.Clients;
using IdentityServer.Data;
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
/// </summary>
/// <remarks>
/// The work lives in the database, not in memory: ending a session makes its clients' rows due
/// (<see cref="UserSessionClient.NotifyAt"/>) in the same transaction, and this sender takes due rows, posts, and
/// deletes each row once it is settled. A token not yet delivered when the process stops is sent after the next start,
/// by this instance or any other. A sender takes a row by a conditional update that moves it a lease ahead, so two
/// instances never post the same attempt, and a crashed instance's row is taken again once its lease ends. A client
/// that cannot be reached, or answers 408, 429 or 5xx, is tried again later with a fresh token
/// (<see cref="BackChannelLogoutOptions"/>); any other answer is final: 2xx delivered, the rest refused. Each client
/// is posted to by one sender at a time and at most four clients at once, so an unreachable client holds up no other.
/// </remarks>
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

    /// <summary>How many due rows one look at the table reads; a post settling looks again.</summary>
    private const int LookAhead = 100;

    /// <summary>A taken row's lease beyond the post's own timeout: long enough for the post to settle, short enough to pick up a crashed sender's work soon.</summary>
    private static readonly TimeSpan LeaseMargin = TimeSpan.FromSeconds(30);

    private readonly DueWork _due = new(clock);

    /// <summary>The clients this instance is posting to now, each with its post.</summary>
    private readonly Dictionary<string, Task> _posting = new(StringComparer.Ordinal);

    /// <summary>Looks at the table now: called once a session ending that made logout tokens due has committed, and as a post settles.</summary>
    public void Wake() => _due.Wake();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            // The database being away must not stop the sender: the rows wait, and the next look finds them.
            await _due.RunAsync(StartDuePostsAsync,
                e => logger.LogWarning(LogoutEvents.QueueUnreadable, e, "Could not read the logout tokens due; trying again within {Interval}", DueWork.PollInterval),
                stoppingToken);
        }
        catch (Exception) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping (a database call cut short may surface as the provider's own exception): nothing to report.
        }
        finally
        {
            // The posts under way give their rows back before the host lets go of the services they use.
            Task[] posting;
            lock (_posting)
            {
                posting = [.. _posting.Values];
            }

            await Task.WhenAll(posting);
        }
    }

    /// <summary>Takes due rows, one per client not already being posted to, up to the free senders; returns when the next row not yet due is due.</summary>
    private async Task<DateTime?> StartDuePostsAsync(CancellationToken stoppingToken)
    {
        string[] busy;
        lock (_posting)
        {
            busy = [.. _posting.Keys];
        }

        await using var scope = scopes.CreateAsyncScope();
        var queue = scope.ServiceProvider.GetRequiredService<LogoutTokenQueue>();
        var now = clock.GetUtcNow().UtcDateTime;
        if (busy.Length < ParallelPosts)
        {
            var due = await queue.DueAsync(now, busy, LookAhead, stoppingToken);
            var leaseEnd = now + options.Value.Timeout + LeaseMargin;
            foreach (var row in due.DistinctBy(c => c.ClientId).Take(ParallelPosts - busy.Length))
            {
                if (await queue.TakeAsync(row, now, leaseEnd, stoppingToken))
                {
                    lock (_posting)
                    {
                        _posting[row.ClientId] = PostAndSettleAsync(row, row.Attempts + 1, stoppingToken);
                    }
                }
            }
        }

        return await queue.NextDueAfterAsync(now, stoppingToken);
    }

    /// <summary>One attempt, then the row's fate: deleted once settled, due again later for a retry.</summary>
    private async Task PostAndSettleAsync(UserSessionClient row, int attempt, CancellationToken stoppingToken)
    {
        await Task.Yield(); // the look at the table goes on meanwhile
        try
        {
            var retryAt = await DeliverAsync(new LogoutNotice(row.ClientId, row.Issuer, row.UserId, row.SessionId), attempt, stoppingToken);
            await WithQueueAsync(queue => queue.SettleAsync(row, attempt, retryAt, CancellationToken.None));
        }
        catch (Exception e) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping in the middle of a post: the row is due again at once, this attempt not counted, for the next
            // start or another instance (a post cut short may have arrived: a client may then be told twice).
            logger.LogDebug(e, "Logout token post for client {ClientId} interrupted by the server stopping", row.ClientId);
            await ReleaseQuietlyAsync(row, attempt);
        }
        catch (Exception e)
        {
            // One notice going wrong must not stop the others; its row is taken again when its lease ends.
            logger.LogError(LogoutEvents.LogoutError, e, "Logout token for client {ClientId} could not be sent; tried again when its lease ends", row.ClientId);
        }
        finally
        {
            lock (_posting)
            {
                _posting.Remove(row.ClientId);
            }

            Wake();
        }
    }

    /// <summary>Best effort while stopping: if it fails, the lease ends and the row is taken again anyway.</summary>
    private async Task ReleaseQuietlyAsync(UserSessionClient row, int attempt)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await WithQueueAsync(queue => queue.ReleaseAsync(row, attempt, clock.GetUtcNow().UtcDateTime, timeout.Token));
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "Could not give back the logout token row for client {ClientId}; it is taken again when its lease ends", row.ClientId);
        }
    }

    private async Task WithQueueAsync(Func<LogoutTokenQueue, Task<int>> change)
    {
        await using var scope = scopes.CreateAsyncScope();
        await change(scope.ServiceProvider.GetRequiredService<LogoutTokenQueue>());
    }

    /// <summary>Posts one logout token; returns when to try again, or null when settled (delivered, refused, given up, or no longer wanted).</summary>
    private async Task<DateTime?> DeliverAsync(LogoutNotice notice, int attempt, CancellationToken stoppingToken)
    {
        if (attempt > options.Value.Attempts)
        {
            // Only after a sender stopped or crashed mid-post on the last attempt: that post may have gone through.
            logger.LogWarning(LogoutEvents.LogoutFailed, "Logout token for session {SessionId} not delivered to client {ClientId}: {Attempts} attempt(s) made, the last one interrupted",
                notice.SessionId, notice.ClientId, options.Value.Attempts);
            return null;
        }

        if (await CurrentUriAsync(notice.ClientId, stoppingToken) is not { } uri)
        {
            logger.LogInformation(LogoutEvents.LogoutSkipped, "Client {ClientId} no longer has a back-channel logout URI: no logout token sent", notice.ClientId);
            return null;
        }

        var (delivered, retry, outcome) = await PostAsync(uri, CreateLogoutToken(notice), stoppingToken);
        if (delivered)
        {
            logger.LogInformation(LogoutEvents.LogoutSent, "Logout token for session {SessionId} delivered to client {ClientId}", notice.SessionId, notice.ClientId);
            return null;
        }

        if (retry && attempt < options.Value.Attempts)
        {
            var retryAt = _due.RetryAt(attempt, options.Value.RetryDelay);
            logger.LogInformation(LogoutEvents.LogoutRetrying, "Logout token for session {SessionId} not delivered to client {ClientId} at {Endpoint} (attempt {Attempt}): {Outcome}; trying again at {RetryAt:O}",
                notice.SessionId, notice.ClientId, WithoutQuery(uri), attempt, outcome, retryAt);
            return retryAt;
        }

        logger.LogWarning(LogoutEvents.LogoutFailed, "Logout token for session {SessionId} not delivered to client {ClientId} at {Endpoint} after {Attempts} attempt(s): {Outcome}",
            notice.SessionId, notice.ClientId, WithoutQuery(uri), attempt, outcome);
        return null;
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
        var claims = new Dictionary<string, object>
        {
            ["sid"] = notice.SessionId,
            [Claims.JwtId] = Guid.NewGuid().ToString("N"),
            ["events"] = new Dictionary<string, object> { [LogoutEvent] = new Dictionary<string, object>() },
        };
        // A row recorded by an instance still on the previous version during an upgrade has no user; sid alone is
        // enough (section 2.4 asks for sub, sid, or both).
        if (!string.IsNullOrEmpty(notice.Subject))
        {
            claims[Claims.Subject] = notice.Subject;
        }

        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = notice.Issuer,
            Audience = notice.ClientId,
            IssuedAt = now,
            Expires = now.AddMinutes(2),
            TokenType = "logout+jwt",
            SigningCredentials = keys.IdentitySigningCredentials, // signed as identity tokens are: what the client verifies
            Claims = claims,
        });
    }
}

public static class LogoutEvents
{
    public static readonly EventId LogoutQueued = new(2101, nameof(LogoutQueued));
    public static readonly EventId LogoutSent = new(2102, nameof(LogoutSent));
    public static readonly EventId LogoutFailed = new(2103, nameof(LogoutFailed));
    public static readonly EventId LogoutSkipped = new(2104, nameof(LogoutSkipped));
    public static readonly EventId LogoutRetrying = new(2105, nameof(LogoutRetrying));
    public static readonly EventId QueueUnreadable = new(2106, nameof(QueueUnreadable));
    public static readonly EventId LogoutError = new(2107, nameof(LogoutError));
}
