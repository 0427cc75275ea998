using System.Net;
using System.Text.Json;
using IdentityServer.Accounts;
using IdentityServer.Admin;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using IdentityServer.Tests.Keys;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// The account's personal data page: a copy of what the server keeps about the person (JSON, without secrets), and
/// deleting the account, which ends everything it held as an administrator's deletion does.
/// </summary>
public abstract class PersonalDataTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task The_download_holds_the_account_its_sessions_and_connected_apps_and_no_secrets()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid offline_access");

        var page = await AccountPages.OpenAsync(browser, "/account/personal-data");
        var download = await browser.SubmitAsync(page, selector: "#download-form");

        Assert.Equal(HttpStatusCode.OK, download.Status);
        Assert.Equal("application/json", download.Response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("personal-data.json", download.Response.Content.Headers.ContentDisposition?.FileNameStar ?? download.Response.Content.Headers.ContentDisposition?.FileName);
        Assert.Contains("no-store", download.Response.Headers.CacheControl?.ToString());
        var data = JsonDocument.Parse(download.Body).RootElement;
        Assert.Equal(user.UserName, data.GetProperty("account").GetProperty("user_name").GetString());
        Assert.Equal(user.Email, data.GetProperty("account").GetProperty("email").GetString());
        Assert.NotEmpty(data.GetProperty("sessions").EnumerateArray());
        Assert.Contains(data.GetProperty("connected_apps").EnumerateArray(), app => app.GetProperty("client_id").GetString() == client.ClientId);
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var stored = await scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>().FindByIdAsync(user.Id);
        Assert.DoesNotContain(stored!.PasswordHash!, download.Body);
        Assert.DoesNotContain(stored.SecurityStamp!, download.Body);
        Assert.DoesNotContain(user.Password, download.Body);
        Assert.DoesNotContain("password", download.Body, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Deleting needs the user name typed; then the account, its sessions, its tokens and its consents are gone, the
    /// browser is signed out, and the audit log says who did it.
    /// </summary>
    [SkippableFact]
    public async Task Deleting_the_account_ends_its_sessions_tokens_and_sign_in()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var browser = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid offline_access");
        var otherBrowser = server.CreateBrowser();
        await AccountPages.SignInAsync(otherBrowser, user.UserName, user.Password);

        var page = await AccountPages.OpenAsync(browser, "/account/personal-data");
        var mistyped = await browser.SubmitAsync(page, new Dictionary<string, string> { ["ConfirmUserName"] = user.UserName + "x" }, selector: "#delete-form");
        Assert.Contains("Type your user name exactly", mistyped.Body);
        Assert.NotNull(await FindUserAsync(user.Id));

        var deleted = await browser.SubmitAsync(mistyped, new Dictionary<string, string> { ["ConfirmUserName"] = user.UserName }, selector: "#delete-form");

        Assert.Equal("/account/logout", deleted.Uri.AbsolutePath);
        Assert.Contains("Your account has been deleted", deleted.Body);
        Assert.Null(await FindUserAsync(user.Id));
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(otherBrowser, "/account")).Uri.AbsolutePath);
        var refreshed = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal(HttpStatusCode.BadRequest, refreshed.StatusCode);
        var signIn = await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password);
        Assert.Equal("/account/login", signIn.Uri.AbsolutePath);
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var audit = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<AuditEntry>()
            .Where(e => e.TargetId == user.Id).ToListAsync();
        Assert.Contains(audit, e => e.ActorType == AdminActor.UserType && e.ActorId == user.Id && e.After == null && e.Before != null);
    }

    /// <summary>Emails still queued for the account (here a reset link, its delivery failing) are deleted with it.</summary>
    [SkippableFact]
    public async Task Emails_still_queued_for_the_account_go_with_it()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        await using var factory = await Mailbox.ServerHoldingEmailsAsync(server);
        var attached = new AttachedServer(factory, server.Provider);
        var user = await attached.CreateUserAsync();
        var browser = attached.CreateBrowser();
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"), new Dictionary<string, string> { ["Input.Email"] = user.Email });
        await Eventually.TrueAsync(async () => await Mailbox.QueuedForAsync(attached, user.Email) == 1, TimeSpan.FromSeconds(15), "the reset email stored");

        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var page = await AccountPages.OpenAsync(browser, "/account/personal-data");
        await browser.SubmitAsync(page, new Dictionary<string, string> { ["ConfirmUserName"] = user.UserName }, selector: "#delete-form");

        Assert.Null(await FindUserAsync(user.Id, attached));
        Assert.Equal(0, await Mailbox.QueuedForAsync(attached, user.Email));
    }

    /// <summary>
    /// An email-change link still queued for the new address, not yet the account's, goes with it too: the address
    /// is not the account's, the email is.
    /// </summary>
    [SkippableFact]
    public async Task An_email_change_link_still_queued_for_the_new_address_goes_with_the_account()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        await using var factory = await Mailbox.ServerHoldingEmailsAsync(server);
        var attached = new AttachedServer(factory, server.Provider);
        var user = await attached.CreateUserAsync();
        var browser = attached.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var newEmail = $"{Unique.Name("new")}@example.test";
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/email"),
            new Dictionary<string, string> { ["Input.NewEmail"] = newEmail, ["Input.Password"] = user.Password });
        await Eventually.TrueAsync(async () => await Mailbox.QueuedForAsync(attached, newEmail) == 1, TimeSpan.FromSeconds(15), "the email change link stored");

        var page = await AccountPages.OpenAsync(browser, "/account/personal-data");
        await browser.SubmitAsync(page, new Dictionary<string, string> { ["ConfirmUserName"] = user.UserName }, selector: "#delete-form");

        Assert.Null(await FindUserAsync(user.Id, attached));
        Assert.Equal(0, await Mailbox.QueuedForAsync(attached, newEmail));
    }

    /// <summary>Only the deletion itself leads to "your account has been deleted": a link saying so does not.</summary>
    [SkippableFact]
    public async Task A_link_cannot_tell_anyone_their_account_was_deleted()
    {
        var page = await AccountPages.OpenAsync(server.CreateBrowser(), "/account/logout?deleted=true&Deleted=true");

        Assert.DoesNotContain("Your account has been deleted", page.Body);
    }

    /// <summary>Both need a recent sign-in: a session older than Accounts:RecentSignIn (5 minutes) signs in again first.</summary>
    [SkippableFact]
    public async Task An_older_session_signs_in_again_before_it_downloads_or_deletes()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(server.Settings),
            testServices: services => services.AddSingleton<TimeProvider>(clock));
        var attached = new AttachedServer(factory, server.Provider);
        var user = await attached.CreateUserAsync();
        var browser = attached.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var page = await AccountPages.OpenAsync(browser, "/account/personal-data");

        clock.Advance(TimeSpan.FromMinutes(6));
        var download = await browser.SubmitAsync(page, selector: "#download-form");
        var delete = await browser.SubmitAsync(page, new Dictionary<string, string> { ["ConfirmUserName"] = user.UserName }, selector: "#delete-form");

        Assert.Equal("/account/login", download.Uri.AbsolutePath);
        Assert.Equal("/account/login", delete.Uri.AbsolutePath);
        Assert.NotNull(await FindUserAsync(user.Id, attached));
    }

    private async Task<ApplicationUser?> FindUserAsync(string id, ServerFixture? on = null)
    {
        await using var scope = (on ?? server).Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>().FindByIdAsync(id);
    }
}

public sealed class SqlitePersonalDataTests(SqliteServerFixture server) : PersonalDataTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlPersonalDataTests(PostgreSqlServerFixture server) : PersonalDataTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;

/// <summary>The last administrator cannot delete their account: on a database of its own, where they are the only one.</summary>
public sealed class LastAdministratorDeletionTests : IAsyncLifetime
{
    private readonly SqliteServerFixture _server = new();

    public Task InitializeAsync() => _server.InitializeAsync();

    public Task DisposeAsync() => _server.DisposeAsync();

    [SkippableFact]
    public async Task The_last_administrator_is_told_to_hand_over_first()
    {
        var admin = await _server.CreateUserAsync(null, "admin");
        var browser = _server.CreateBrowser();
        await AccountPages.SignInAsync(browser, admin.UserName, admin.Password);

        var page = await AccountPages.OpenAsync(browser, "/account/personal-data");
        var refused = await browser.SubmitAsync(page, new Dictionary<string, string> { ["ConfirmUserName"] = admin.UserName }, selector: "#delete-form");

        Assert.Contains("You are the last administrator", refused.Body);
        await using var scope = _server.Factory.Services.CreateAsyncScope();
        Assert.NotNull(await scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>().FindByIdAsync(admin.Id));
    }
}
