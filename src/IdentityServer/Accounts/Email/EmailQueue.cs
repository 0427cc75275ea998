using System.Threading.Channels;
using MimeKit;

namespace IdentityServer.Accounts.Email;

/// <summary>
/// Account emails are queued and sent in the background, so a page answers in the same time whether or not it
/// sent one (forgot password for an unknown address answers as fast as for a known one) and a slow SMTP server
/// never holds a request. <see cref="EmailDelivery"/> stores each one in the database at once and sends it from there.
/// </summary>
public sealed class EmailQueue
{
    private readonly Channel<QueuedEmail> _channel = Channel.CreateBounded<QueuedEmail>(new BoundedChannelOptions(10_000)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });

    public bool TryEnqueue(MimeMessage message, string userId) => _channel.Writer.TryWrite(new QueuedEmail(message, userId));

    public ChannelReader<QueuedEmail> Reader => _channel.Reader;
}

/// <summary>An email on its way to the database, with the id of the account it is for.</summary>
public sealed record QueuedEmail(MimeMessage Message, string UserId);
