using System.Security.Cryptography;
using IdentityServer.Data;
using MailKit.Net.Smtp;
using MailKit.Security;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;
using MimeKit;

namespace IdentityServer.Accounts.Email;

/// <summary>
/// Sends the queued emails: to the pickup directory as <c>.eml</c> files, or through SMTP with MailKit. Each email
/// taken from the in-memory queue is first stored (<see cref="OutgoingEmail"/>), then sent from the database: an SMTP
/// server that is down, or answers with a temporary error, is tried again later (<c>Email:Attempts</c>,
/// <c>Email:RetryDelay</c>), and an email not yet sent when the process stops is sent after the next start, by this
/// instance or another. A permanent refusal (5xx) is final.
/// </summary>
public sealed class EmailDelivery(
    EmailQueue queue,
    IServiceScopeFactory scopes,
    IDataProtectionProvider protection,
    TimeProvider clock,
    IOptions<EmailOptions> options,
    ILogger<EmailDelivery> logger) : BackgroundService
{
    /// <summary>The data protection purpose of stored messages.</summary>
    public const string ProtectionPurpose = "IdentityServer.Accounts.Email.OutgoingEmail";

    private readonly IDataProtector _protector = protection.CreateProtector(ProtectionPurpose);
    private readonly DueWork _due = new(clock);

    /// <summary>A taken email's lease: longer than one whole SMTP conversation may take.</summary>
    private TimeSpan Lease => options.Value.Smtp.Timeout + TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.WhenAll(StoreQueuedAsync(stoppingToken), SendStoredAsync(stoppingToken));
        }
        catch (Exception) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: what is stored is sent after the next start.
        }
    }

    /// <summary>
    /// Moves each queued email into the database (the queue only spares the page the write's time). When the server
    /// stops, what is still queued is stored before it goes, within a few seconds.
    /// </summary>
    private async Task StoreQueuedAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var queued in queue.Reader.ReadAllAsync(stoppingToken))
            {
                await StoreAsync(queued, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            while (!drain.IsCancellationRequested && queue.Reader.TryRead(out var queued))
            {
                await StoreAsync(queued, drain.Token);
            }
        }
    }

    private async Task StoreAsync(QueuedEmail queued, CancellationToken ct)
    {
        var message = queued.Message;
        var now = clock.GetUtcNow().UtcDateTime;
        var subject = Cut(message.Subject ?? string.Empty, 200);
        var to = Cut(message.To.ToString(), 320);
        Exception failure;
        try
        {
            using var mime = new MemoryStream();
            await message.WriteToAsync(mime, ct);
            var email = new OutgoingEmail
            {
                Id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
                Subject = subject,
                To = to,
                UserId = queued.UserId,
                Message = _protector.Protect(mime.ToArray()),
                QueuedAt = now,
                SendAt = now,
            };
            await using var scope = scopes.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<EmailOutbox>().AddAsync(email, ct);
            _due.Wake();
            return;
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            failure = e;
        }

        if (DatabaseErrors.IsForeignKeyViolation(failure))
        {
            // The account was deleted since the page queued this (the email's one foreign key, to its account, refused
            // it): its emails went with it.
            logger.LogInformation(AccountEvents.EmailFailed, "Email {Subject} to {To} not sent: its account was deleted", subject, to);
            return;
        }

        // The database (or the key ring in it) is away: one attempt now rather than none.
        logger.LogWarning(AccountEvents.EmailFailed, failure, "Email {Subject} to {To} could not be stored; sending it once without retries", subject, to);
        await TrySendAsync(message, subject, to, ct);
    }

    private Task SendStoredAsync(CancellationToken stoppingToken) => _due.RunAsync(SendDueAsync,
        e => logger.LogWarning(AccountEvents.EmailFailed, e, "Could not read the emails due; trying again within {Interval}", DueWork.PollInterval),
        stoppingToken);

    /// <summary>Sends the emails due, one after the other; returns when the next one not yet due is due.</summary>
    private async Task<DateTime?> SendDueAsync(CancellationToken stoppingToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var outbox = scope.ServiceProvider.GetRequiredService<EmailOutbox>();
        List<OutgoingEmail> due;
        do
        {
            var now = clock.GetUtcNow().UtcDateTime;
            due = await outbox.DueAsync(now, 20, stoppingToken);
            foreach (var email in due)
            {
                if (await outbox.TakeAsync(email, now, now + Lease, stoppingToken))
                {
                    var attempt = email.Attempts + 1;
                    DateTime? retryAt;
                    try
                    {
                        retryAt = await SendAsync(email, attempt, stoppingToken);
                    }
                    catch (Exception) when (stoppingToken.IsCancellationRequested)
                    {
                        // Stopping mid-send: due again at once, the attempt not counted, for the next start or another instance.
                        using var release = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                        await outbox.ReleaseAsync(email, attempt, clock.GetUtcNow().UtcDateTime, release.Token);
                        throw;
                    }

                    await outbox.SettleAsync(email, attempt, retryAt, CancellationToken.None);
                }
            }
        }
        while (due.Count > 0 && !stoppingToken.IsCancellationRequested);

        return await outbox.NextDueAfterAsync(clock.GetUtcNow().UtcDateTime, stoppingToken);
    }

    /// <summary>One attempt; returns when to try again, or null when settled (sent, refused for good, or given up on).</summary>
    private async Task<DateTime?> SendAsync(OutgoingEmail email, int attempt, CancellationToken stoppingToken)
    {
        if (attempt > options.Value.Attempts)
        {
            // Only after a sender crashed mid-send on the last attempt, or a message no instance could read.
            logger.LogError(AccountEvents.EmailFailed, "Email {Subject} to {To} not delivered after {Attempts} attempt(s); given up", email.Subject, email.To, options.Value.Attempts);
            return null;
        }

        Exception? failure;
        try
        {
            var message = await MimeMessage.LoadAsync(new MemoryStream(_protector.Unprotect(email.Message)), stoppingToken);
            failure = await TrySendAsync(message, email.Subject, email.To, stoppingToken);
        }
        catch (CryptographicException e)
        {
            // This instance cannot read it (its key ring differs, say): another may, or this one once it is mended.
            failure = e;
        }

        if (failure is null)
        {
            return null;
        }

        if (attempt < options.Value.Attempts)
        {
            var retryAt = _due.RetryAt(attempt, options.Value.RetryDelay);
            logger.LogWarning(AccountEvents.EmailFailed, failure, "Email {Subject} to {To} not delivered (attempt {Attempt}); trying again at {RetryAt:O}",
                email.Subject, email.To, attempt, retryAt);
            return retryAt;
        }

        logger.LogError(AccountEvents.EmailFailed, failure, "Email {Subject} to {To} not delivered after {Attempts} attempt(s); given up", email.Subject, email.To, attempt);
        return null;
    }

    /// <summary>Delivers the message; returns the failure worth another attempt, or null (delivered, or refused for good, which is logged here).</summary>
    private async Task<Exception?> TrySendAsync(MimeMessage message, string subject, string to, CancellationToken stoppingToken)
    {
        try
        {
            await DeliverAsync(message, stoppingToken);
            return null;
        }
        catch (SmtpCommandException e) when ((int)e.StatusCode >= 500)
        {
            logger.LogError(AccountEvents.EmailFailed, e, "Email {Subject} to {To} refused by the SMTP server ({Status}); not tried again", subject, to, (int)e.StatusCode);
            return null;
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested)
        {
            return e;
        }
    }

    private async Task DeliverAsync(MimeMessage message, CancellationToken ct)
    {
        var settings = options.Value;
        if (!string.IsNullOrWhiteSpace(settings.PickupDirectory))
        {
            Directory.CreateDirectory(settings.PickupDirectory);
            var name = $"{DateTime.UtcNow:yyyyMMddHHmmssfff}-{Guid.NewGuid():N}";
            var temporary = Path.Combine(settings.PickupDirectory, name + ".tmp");
            await message.WriteToAsync(temporary, ct);
            // Renamed only when complete, so a reader never sees half a message.
            File.Move(temporary, Path.Combine(settings.PickupDirectory, name + ".eml"));
        }
        else if (!string.IsNullOrWhiteSpace(settings.Smtp.Host))
        {
            // One limit for the whole conversation (MailKit's own timeout is per read or write), within the lease.
            using var conversation = CancellationTokenSource.CreateLinkedTokenSource(ct);
            conversation.CancelAfter(settings.Smtp.Timeout);
            using var smtp = new SmtpClient { Timeout = (int)settings.Smtp.Timeout.TotalMilliseconds };
            var security = !settings.Smtp.UseTls ? SecureSocketOptions.None
                : settings.Smtp.Port == 465 ? SecureSocketOptions.SslOnConnect : SecureSocketOptions.StartTls;
            await smtp.ConnectAsync(settings.Smtp.Host, settings.Smtp.Port, security, conversation.Token);
            if (!string.IsNullOrEmpty(settings.Smtp.UserName))
            {
                await smtp.AuthenticateAsync(settings.Smtp.UserName, settings.Smtp.Password ?? string.Empty, conversation.Token);
            }

            await smtp.SendAsync(message, conversation.Token);
            await smtp.DisconnectAsync(quit: true, conversation.Token);
        }
        else
        {
            logger.LogWarning(AccountEvents.EmailFailed, "Email {Subject} to {To} not delivered: set Email:Smtp:Host (or Email:PickupDirectory)",
                message.Subject, message.To.ToString());
            return;
        }

        logger.LogInformation(AccountEvents.EmailSent, "Email {Subject} delivered to {To}", message.Subject, message.To.ToString());
    }

    private static string Cut(string text, int length) => text.Length <= length ? text : text[..length];
}
