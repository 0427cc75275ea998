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
    private readonly Channel<MimeMessage> _channel = Channel.CreateBounded<MimeMessage>(new BoundedChannelOptions(10_000)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });

    public bool TryEnqueue(MimeMessage message) => _channel.Writer.TryWrite(message);

    public ChannelReader<MimeMessage> Reader => _channel.Reader;
}
