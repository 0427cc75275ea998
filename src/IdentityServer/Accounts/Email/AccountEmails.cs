using IdentityServer.Authorization;
using IdentityServer.Shared;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;
using MimeKit;

namespace IdentityServer.Accounts.Email;

/// <summary>
/// The emails an account receives, as plain text, with absolute links. Links point to <c>Accounts:PublicOrigin</c>,
/// else <c>Tokens:Issuer</c>, else the origin the request came to. In Development each link is also logged.
/// </summary>
public sealed class AccountEmails(
    EmailQueue queue,
    IOptions<EmailOptions> email,
    IOptions<AccountsOptions> accounts,
    IOptions<TokenOptions> tokens,
    IOptions<Hosting.HostingOptions> hosting,
    IHttpContextAccessor http,
    IHostEnvironment environment,
    ILogger<AccountEmails> logger)
{
    public void SendEmailConfirmation(string userId, string to, string userName, string link) => Send(userId, to, "Confirm your email address",
        $"""
        Hello {userName},

        Confirm your email address by opening this link:

        {link}

        The link expires in {Lifetime}. If you did not create an account, ignore this email.
        """, link);

    public void SendAlreadyRegistered(string userId, string to, string loginLink, string resetLink) => Send(userId, to, "You already have an account",
        $"""
        Hello,

        Someone, perhaps you, tried to create an account with this email address, which already has one.

        Sign in:                {loginLink}
        Forgot your password?   {resetLink}

        If it was not you, ignore this email: nothing has changed.
        """, loginLink);

    public void SendPasswordReset(string userId, string to, string userName, string link) => Send(userId, to, "Reset your password",
        $"""
        Hello {userName},

        Choose a new password by opening this link:

        {link}

        The link works once and expires in {Lifetime}. If you did not ask for this, ignore this email: your password stays as it is.
        """, link);

    public void SendEmailChange(string userId, string to, string userName, string link) => Send(userId, to, "Confirm your new email address",
        $"""
        Hello {userName},

        Confirm that this is your new email address by opening this link:

        {link}

        The link works once and expires in {Lifetime}. Until then your old address stays in use.
        """, link);

    public void SendPasswordChanged(string userId, string to, string userName, string resetLink) => Send(userId, to, "Your password was changed",
        $"""
        Hello {userName},

        The password of your account was just changed, and every other session was signed out.

        If this was not you, reset your password now: {resetLink}
        """, resetLink);

    /// <summary>
    /// The account's email address was changed: the old address hears of it, as it no longer gets the account's emails
    /// (a password reset link among them). Not the new address: the old one may no longer be the owner's.
    /// </summary>
    public void SendEmailChanged(string userId, string to, string userName) => Send(userId, to, "Your email address was changed",
        $"""
        Hello {userName},

        The email address of your account was just changed: its emails now go to the new address, no longer to this one.

        If this was not you, someone who knows your password changed it. Sign in if you still can, change your password
        and your email address, and sign out everywhere: {Link("/account")}
        """, Link("/account"));

    /// <summary>
    /// A way to sign in (<paramref name="method"/>, managed on the page <paramref name="path"/>) was added to the account:
    /// its owner hears of it, as of a new password, at a confirmed address only (an unconfirmed one may be anyone's).
    /// </summary>
    public void SendSignInMethodAdded(ApplicationUser user, string method, string path)
    {
        if (user.Email is not { } to || !user.EmailConfirmed)
        {
            return;
        }

        var accountLink = Link(path);
        Send(user.Id, to, "A way to sign in was added to your account",
            $"""
            Hello {user.UserName ?? to},

            {method} was just added to your account as a way to sign in.

            If this was not you, sign in and remove it, and sign out everywhere: {accountLink}
            """, accountLink);
    }

    /// <summary>An absolute link to <paramref name="path"/> on this server, with <paramref name="query"/>.</summary>
    public string Link(string path, IDictionary<string, string?>? query = null)
    {
        // Accounts:PublicOrigin is an origin: the server's pages are under Hosting:PathBase on it. The issuer has the path already.
        var origin = accounts.Value.PublicOrigin is { AbsolutePath: "/" } publicOrigin && hosting.Value.PathBase.Length > 0
            ? new Uri(publicOrigin, hosting.Value.PathBase + "/")
            : accounts.Value.ConfiguredPublicAddress(tokens.Value) ?? RequestOrigin();
        var url = new Uri(origin, origin.AbsolutePath.TrimEnd('/') + path).AbsoluteUri;
        return query is null ? url : QueryHelpers.AddQueryString(url, query);
    }

    private Uri RequestOrigin()
    {
        var request = http.HttpContext?.Request ?? throw new InvalidOperationException("Email links outside a request need Accounts:PublicOrigin.");
        return new Uri($"{request.Scheme}://{request.Host}{request.PathBase}/");
    }

    private string Lifetime => accounts.Value.EmailLinkLifetime switch
    {
        { TotalDays: >= 1 } t => $"{t.TotalDays:0.#} days",
        { TotalHours: >= 1 } t => t.TotalHours == 1 ? "1 hour" : $"{t.TotalHours:0.#} hours",
        var t => (int)t.TotalMinutes == 1 ? "1 minute" : $"{(int)t.TotalMinutes} minutes",
    };

    /// <summary>Queues the email to <paramref name="to"/> for the account <paramref name="userId"/>, with which it is deleted.</summary>
    private void Send(string userId, string to, string subject, string text, string link)
    {
        if (!MailboxAddress.TryParse(to, out var recipient))
        {
            // Accounts made before addresses were checked with MimeKit's parser may hold one it cannot read.
            logger.LogError(AccountEvents.EmailFailed, "Email {Subject} to {To} not sent: the address cannot be parsed", subject, to);
            return;
        }

        var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse(email.Value.From));
        message.To.Add(recipient);
        message.Subject = subject;
        message.Body = new TextPart("plain") { Text = text };
        if (environment.IsDevelopment())
        {
            logger.LogInformation(AccountEvents.EmailSent, "Email {Subject} to {To}: {Link}", subject, to, link);
        }

        if (!queue.TryEnqueue(message, userId))
        {
            logger.LogError(AccountEvents.EmailFailed, "Email {Subject} to {To} dropped: the outgoing queue is full", subject, to);
        }
    }
}

public static class AccountEmailExtensions
{
    public static WebApplicationBuilder AddAccountEmail(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<EmailOptions>().BindConfiguration(EmailOptions.Section).ValidateSettings(EmailOptions.Section)
            // MimeKit parses a bare word as a mailbox too ("not-an-email"); a sender needs a domain for SMTP to take it.
            .Validate(o => MailboxAddress.TryParse(o.From, out var sender) && sender.LocalPart.Length > 0 && sender.Domain.Length > 0,
                "Email:From is not a valid email address (such as Identity Server <no-reply@example.com>).")
            .ValidateOnStart();
        builder.Services.AddHttpContextAccessor();
        builder.Services.AddSingleton<EmailQueue>();
        builder.Services.AddScoped<EmailOutbox>();
        builder.Services.AddHostedService<EmailDelivery>();
        builder.Services.AddScoped<AccountEmails>();
        return builder;
    }
}
