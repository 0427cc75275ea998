using IdentityServer.Accounts.Email;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using MimeKit;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// Account emails are stored before they are sent: one the server could not deliver is tried again later, and one
/// still waiting when the server stops is sent after the next start. The mail drop here is the pickup folder, made
/// unwritable (a file in its place) to stand for an SMTP server that is down.
/// </summary>
public abstract class EmailDeliveryTests<TFixture>(TFixture fixture) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task An_email_not_delivered_before_the_server_stops_is_delivered_after_the_next_start()
    {
        var (settings, pickup) = await BlockedDeliverySettingsAsync();
        var clock = new TestClock(DateTimeOffset.UtcNow);
        TestServerFactory Start() => new(settings, testServices: services => services.AddSingleton<TimeProvider>(clock));

        TestUser user;
        await using (var before = Start())
        {
            var server = new AttachedServer(before, fixture.Provider);
            user = await server.CreateUserAsync();
            var browser = server.CreateBrowser();
            await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"), new Dictionary<string, string> { ["Input.Email"] = user.Email });
            await Eventually.TrueAsync(async () => (await StoredAsync(server)).SingleOrDefault() is { Attempts: 1 } email
                    && email.SendAt > clock.GetUtcNow().UtcDateTime.AddMinutes(5),
                TimeSpan.FromSeconds(15), "the failed email waiting for its retry");
        }

        File.Delete(pickup);
        clock.Advance(TimeSpan.FromMinutes(11));
        await using var after = Start();
        var restarted = new AttachedServer(after, fixture.Provider);
        _ = after.Server;

        await Eventually.TrueAsync(() => Task.FromResult(Directory.Exists(pickup) && Directory.EnumerateFiles(pickup, "*.eml").Any()),
            TimeSpan.FromSeconds(15), "the email in the pickup folder");
        var message = await MimeMessage.LoadAsync(Assert.Single(Directory.EnumerateFiles(pickup, "*.eml")));
        Assert.Equal("Reset your password", message.Subject);
        Assert.Equal(user.Email, message.To.Mailboxes.Single().Address);
        Assert.Contains("/account/reset-password", message.TextBody);
        await Eventually.TrueAsync(async () => (await StoredAsync(restarted)).Count == 0, TimeSpan.FromSeconds(15), "the sent email's row deleted");
    }

    /// <summary>Stored protected: the reset link in it works as a password until it expires.</summary>
    [SkippableFact]
    public async Task A_stored_email_does_not_show_its_link_in_the_database()
    {
        var (settings, _) = await BlockedDeliverySettingsAsync();
        await using var factory = new TestServerFactory(settings);
        var server = new AttachedServer(factory, fixture.Provider);
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"), new Dictionary<string, string> { ["Input.Email"] = user.Email });

        await Eventually.TrueAsync(async () => (await StoredAsync(server)).Count == 1, TimeSpan.FromSeconds(15), "the email stored");
        var stored = Assert.Single(await StoredAsync(server));
        var raw = System.Text.Encoding.Latin1.GetString(stored.Message);
        Assert.DoesNotContain("reset-password", raw);
        Assert.DoesNotContain(user.Email, raw);
        // ...yet it is all there for the server's keys.
        var protector = factory.Services.GetRequiredService<Microsoft.AspNetCore.DataProtection.IDataProtectionProvider>()
            .CreateProtector(EmailDelivery.ProtectionPurpose);
        var message = await MimeMessage.LoadAsync(new MemoryStream(protector.Unprotect(stored.Message)));
        Assert.Contains("/account/reset-password", message.TextBody);
    }

    /// <summary>
    /// An email whose account is deleted between the page queuing it and its storing (the database refuses its row)
    /// is dropped, not sent once from memory as when the database is away. Emails are stored in the order queued, so
    /// once a later one arrives the first was dealt with.
    /// </summary>
    [SkippableFact]
    public async Task An_email_whose_account_was_deleted_before_it_was_stored_is_not_sent()
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var pickup = Path.Combine(Path.GetTempPath(), "idsrv-tests", Guid.NewGuid().ToString("N"), "mail");
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(fixture.Settings) { ["Email:PickupDirectory"] = pickup });
        var server = new AttachedServer(factory, fixture.Provider);
        var user = await server.CreateUserAsync();
        var queue = factory.Services.GetRequiredService<EmailQueue>();

        Assert.True(queue.TryEnqueue(Message("gone@example.test", "For a deleted account"), userId: Guid.NewGuid().ToString()));
        Assert.True(queue.TryEnqueue(Message(user.Email, "For an account"), user.Id));

        await Mailbox.WaitForAsync(pickup, user.Email, "For an account");
        Assert.DoesNotContain(Mailbox.MessagesIn(pickup), m => m.Subject == "For a deleted account");
        Assert.Equal(0, await Mailbox.QueuedForAsync(server, "gone@example.test"));
    }

    private static MimeMessage Message(string to, string subject) => new()
    {
        From = { MailboxAddress.Parse("no-reply@example.test") },
        To = { MailboxAddress.Parse(to) },
        Subject = subject,
        Body = new TextPart("plain") { Text = subject },
    };

    /// <summary>A fresh database, and a pickup folder with a file in its place, so that every delivery fails until the file goes; retries 10 minutes apart.</summary>
    private async Task<(Dictionary<string, string?> Settings, string Pickup)> BlockedDeliverySettingsAsync()
    {
        Skip.If(fixture.UnavailableReason is not null, fixture.UnavailableReason);
        var pickup = await Mailbox.BlockedPickupDirectoryAsync();
        return (new Dictionary<string, string?>(fixture.Settings)
        {
            ["ConnectionStrings:IdentityServer"] = await TestDatabases.CreateAsync(fixture.Provider),
            ["Email:PickupDirectory"] = pickup,
            ["Email:RetryDelay"] = "00:10:00",
        }, pickup);
    }

    private static async Task<List<OutgoingEmail>> StoredAsync(ServerFixture server)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Set<OutgoingEmail>().AsNoTracking().ToListAsync();
    }
}

public sealed class SqliteEmailDeliveryTests(SqliteServerFixture fixture) : EmailDeliveryTests<SqliteServerFixture>(fixture), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlEmailDeliveryTests(PostgreSqlServerFixture fixture) : EmailDeliveryTests<PostgreSqlServerFixture>(fixture), IClassFixture<PostgreSqlServerFixture>;
