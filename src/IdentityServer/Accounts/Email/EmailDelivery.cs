using MailKit.Net.Smtp;
using MailKit.Security;
using Microsoft.Extensions.Options;
using MimeKit;

namespace IdentityServer.Accounts.Email;

/// <summary>Sends the queued emails: to the pickup directory as <c>.eml</c> files, or through SMTP with MailKit.</summary>
public sealed class EmailDelivery(EmailQueue queue, IOptions<EmailOptions> options, ILogger<EmailDelivery> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var message in queue.Reader.ReadAllAsync(stoppingToken))
            {
                try
                {
                    await DeliverAsync(message, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogError(AccountEvents.EmailFailed, e, "Email {Subject} to {To} could not be delivered", message.Subject, message.To.ToString());
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
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
            using var smtp = new SmtpClient();
            var security = !settings.Smtp.UseTls ? SecureSocketOptions.None
                : settings.Smtp.Port == 465 ? SecureSocketOptions.SslOnConnect : SecureSocketOptions.StartTls;
            await smtp.ConnectAsync(settings.Smtp.Host, settings.Smtp.Port, security, ct);
            if (!string.IsNullOrEmpty(settings.Smtp.UserName))
            {
                await smtp.AuthenticateAsync(settings.Smtp.UserName, settings.Smtp.Password ?? string.Empty, ct);
            }

            await smtp.SendAsync(message, ct);
            await smtp.DisconnectAsync(quit: true, ct);
        }
        else
        {
            logger.LogWarning(AccountEvents.EmailFailed, "Email {Subject} to {To} not delivered: set Email:Smtp:Host (or Email:PickupDirectory)",
                message.Subject, message.To.ToString());
            return;
        }

        logger.LogInformation(AccountEvents.EmailSent, "Email {Subject} delivered to {To}", message.Subject, message.To.ToString());
    }
}
