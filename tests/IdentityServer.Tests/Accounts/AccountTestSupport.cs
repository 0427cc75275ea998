using System.Security.Cryptography;
using System.Text.RegularExpressions;
using IdentityServer.Accounts.Email;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using MimeKit;

namespace IdentityServer.Tests.Accounts;

/// <summary>Settings for the self-service tests: registration on, confirmed emails required, emails to a pickup folder.</summary>
public static class AccountSettings
{
    public static void Apply(ServerFixture fixture)
    {
        var folder = Path.Combine(Path.GetTempPath(), "idsrv-mail", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        fixture.Settings["Email:PickupDirectory"] = folder;
        fixture.Settings["Accounts:AllowRegistration"] = "true";
        fixture.Settings["Accounts:RequireConfirmedEmail"] = "true";
    }
}

public sealed class SqliteAccountsFixture : SqliteServerFixture
{
    public SqliteAccountsFixture() => AccountSettings.Apply(this);
}

public sealed class PostgreSqlAccountsFixture : PostgreSqlServerFixture
{
    public PostgreSqlAccountsFixture() => AccountSettings.Apply(this);
}

/// <summary>The emails the server wrote to its pickup folder (<c>Email:PickupDirectory</c>), as a mail client sees them.</summary>
public static class Mailbox
{
    /// <summary>Waits for the message to <paramref name="to"/> whose subject contains <paramref name="subject"/>.</summary>
    public static Task<MimeMessage> WaitForAsync(ServerFixture server, string to, string subject, int skip = 0) =>
        WaitForAsync(server.Settings["Email:PickupDirectory"]!, to, subject, skip);

    /// <summary>As above, in the pickup folder <paramref name="folder"/> (of a server process, say).</summary>
    public static async Task<MimeMessage> WaitForAsync(string folder, string to, string subject, int skip = 0)
    {
        MimeMessage? found = null;
        await Eventually.TrueAsync(() =>
        {
            found = MessagesIn(folder).Where(m => m.To.Mailboxes.Any(a => string.Equals(a.Address, to, StringComparison.OrdinalIgnoreCase))
                && (m.Subject ?? string.Empty).Contains(subject, StringComparison.Ordinal)).Skip(skip).FirstOrDefault();
            return Task.FromResult(found is not null);
        }, TimeSpan.FromSeconds(15), $"an email '{subject}' to {to}");
        return found!;
    }

    /// <summary>A pickup folder with a file in its place, so that every delivery to it fails until the file goes.</summary>
    public static async Task<string> BlockedPickupDirectoryAsync()
    {
        var pickup = Path.Combine(Path.GetTempPath(), "idsrv-tests", Guid.NewGuid().ToString("N"), "mail");
        Directory.CreateDirectory(Path.GetDirectoryName(pickup)!);
        await File.WriteAllTextAsync(pickup, "a file where the folder should be: every delivery fails");
        return pickup;
    }

    /// <summary>
    /// A server on <paramref name="server"/>'s database whose deliveries all fail (a blocked pickup folder) and are
    /// retried ten minutes apart, so what it queues stays queued for the test to look at.
    /// </summary>
    public static async Task<TestServerFactory> ServerHoldingEmailsAsync(ServerFixture server) =>
        new(new Dictionary<string, string?>(server.Settings)
        {
            ["Email:PickupDirectory"] = await BlockedPickupDirectoryAsync(),
            ["Email:RetryDelay"] = "00:10:00",
        });

    public static IEnumerable<MimeMessage> Messages(ServerFixture server) => MessagesIn(server.Settings["Email:PickupDirectory"]!);

    public static IEnumerable<MimeMessage> MessagesIn(string folder) =>
        Directory.Exists(folder) ? Directory.GetFiles(folder, "*.eml").Order(StringComparer.Ordinal).Select(file => MimeMessage.Load(file)) : [];

    /// <summary>The emails to <paramref name="to"/> stored and not yet delivered (or given up on).</summary>
    public static async Task<int> QueuedForAsync(ServerFixture server, string to)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<OutgoingEmail>().CountAsync(e => e.To == to);
    }

    /// <summary>The first link in the message's text that goes to <paramref name="path"/>.</summary>
    public static string Link(MimeMessage message, string path)
    {
        var match = Regex.Matches(message.TextBody ?? string.Empty, @"https?://\S+").Select(m => m.Value)
            .FirstOrDefault(url => new Uri(url).AbsolutePath == path);
        Assert.True(match is not null, $"No link to {path} in:\n{message.TextBody}");
        return match!;
    }
}

/// <summary>RFC 6238 TOTP codes, as an authenticator app computes them from the shared key.</summary>
public static class Totp
{
    /// <summary>
    /// The code of the 30-second step after the current one, which the server accepts too (it allows 90 seconds
    /// either way). It accepts each step once, so after a code of this step was used (to turn the authenticator on,
    /// say) the next sign-in needs a later one, as it would a moment later in real life.
    /// </summary>
    public static string NextCode(string base32Key) => Code(base32Key, DateTimeOffset.UtcNow.AddSeconds(30));

    public static string Code(string base32Key, DateTimeOffset? at = null)
    {
        var key = Base32(base32Key.Replace(" ", string.Empty, StringComparison.Ordinal).ToUpperInvariant());
        var step = (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds() / 30;
        var counter = BitConverter.GetBytes(step);
        if (BitConverter.IsLittleEndian)
        {
            Array.Reverse(counter);
        }

        var hash = HMACSHA1.HashData(key, counter);
        var offset = hash[^1] & 0x0f;
        var binary = ((hash[offset] & 0x7f) << 24) | (hash[offset + 1] << 16) | (hash[offset + 2] << 8) | hash[offset + 3];
        return (binary % 1_000_000).ToString("D6", System.Globalization.CultureInfo.InvariantCulture);
    }

    private static byte[] Base32(string input)
    {
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        var output = new List<byte>();
        int buffer = 0, bits = 0;
        foreach (var c in input.TrimEnd('='))
        {
            buffer = (buffer << 5) | alphabet.IndexOf(c, StringComparison.Ordinal);
            bits += 5;
            if (bits >= 8)
            {
                output.Add((byte)(buffer >> (bits - 8)));
                bits -= 8;
            }
        }

        return [.. output];
    }
}

/// <summary>Self-service steps through the pages, as a person takes them.</summary>
public static class AccountPages
{
    public static async Task<BrowserPage> SignInAsync(Browser browser, string userName, string password)
    {
        var login = await browser.NavigateAsync(new Uri(TestServerFactory.Authority, "/account/login").AbsoluteUri);
        return await browser.SubmitAsync(login, new Dictionary<string, string> { ["Input.UserName"] = userName, ["Input.Password"] = password });
    }

    /// <summary>Opens a link from an email and presses its confirmation button (links only show a button on GET).</summary>
    public static async Task<BrowserPage> OpenAndConfirmAsync(Browser browser, string link)
    {
        var page = await browser.NavigateAsync(link);
        return await browser.SubmitAsync(page);
    }

    public static async Task<BrowserPage> OpenAsync(Browser browser, string path) =>
        await browser.NavigateAsync(new Uri(TestServerFactory.Authority, path).AbsoluteUri);

    /// <summary>Turns on the authenticator for the signed-in user; returns the shared key and the recovery codes.</summary>
    public static async Task<(string Key, string[] RecoveryCodes)> EnableAuthenticatorAsync(Browser browser)
    {
        var setup = await OpenAsync(browser, "/account/two-factor/authenticator");
        var key = setup.Document.QuerySelector("#shared-key")?.TextContent ?? throw new InvalidOperationException(setup.Body);
        var done = await browser.SubmitAsync(setup, new Dictionary<string, string> { ["Code"] = Totp.Code(key) });
        var codes = done.Document.QuerySelectorAll("ul.codes code").Select(c => c.TextContent.Trim()).ToArray();
        Assert.True(codes.Length == 10, $"Expected ten recovery codes:\n{done.Body}");
        return (key, codes);
    }
}

/// <summary>The login sessions the server has on record for a user (<c>UserSessions</c>).</summary>
public static class SessionRows
{
    public static async Task<List<IdentityServer.Accounts.UserSession>> OfAsync(ServerFixture server, string userId)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Set<IdentityServer.Accounts.UserSession>()
            .AsNoTracking().Where(s => s.UserId == userId).ToListAsync();
    }
}
