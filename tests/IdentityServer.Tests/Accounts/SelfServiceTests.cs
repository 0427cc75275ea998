using System.Net;
using System.Security.Cryptography;
using IdentityServer.Accounts;
using IdentityServer.Tests.Admin;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Accounts;

/// <summary>
/// Registration, email confirmation, password reset and change, email change, lockout: through the pages, with the
/// links read from the emails the server writes.
/// </summary>
public abstract class SelfServiceTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string Neutral = "The user name or password is incorrect.";

    [SkippableFact]
    public async Task A_new_account_registers_confirms_its_email_through_the_emailed_link_and_signs_in()
    {
        var browser = server.CreateBrowser();
        var userName = Unique.Name("reg");
        var email = $"{userName}@example.test";
        const string password = "a-very-good-passphrase";

        var login = await AccountPages.OpenAsync(browser, "/account/login");
        Assert.NotNull(login.Document.QuerySelector("a[href^='/account/register']"));
        Assert.NotNull(login.Document.QuerySelector("a[href='/account/forgot-password']"));
        var form = await AccountPages.OpenAsync(browser, "/account/register");
        var registered = await browser.SubmitAsync(form, new Dictionary<string, string>
        {
            ["Input.UserName"] = userName, ["Input.Email"] = email, ["Input.Password"] = password, ["Input.ConfirmPassword"] = password,
        });
        Assert.Equal("/account/register/check-email", registered.Uri.AbsolutePath);

        var message = await Mailbox.WaitForAsync(server, email, "Confirm your email address");
        var link = Mailbox.Link(message, "/account/confirm-email");
        Assert.StartsWith(TestServerFactory.Authority.AbsoluteUri, link);
        var confirmed = await AccountPages.OpenAndConfirmAsync(browser, link);
        Assert.Contains("Email confirmed", confirmed.Body);

        var home = await AccountPages.SignInAsync(browser, email, password);
        Assert.Equal("/", home.Uri.AbsolutePath);
        Assert.Contains($"signed in as <strong>{userName}</strong>", home.Body);
    }

    /// <summary>
    /// Lockout holds for an account whose email is not confirmed yet: after five wrong passwords the right one must
    /// not be told apart (by the "confirm your email" answer) until the lockout ends.
    /// </summary>
    [SkippableFact]
    public async Task An_unconfirmed_account_is_locked_out_after_five_wrong_passwords_like_any_other()
    {
        var browser = server.CreateBrowser();
        var userName = Unique.Name("unl");
        const string password = "another-good-passphrase";
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/register"), new Dictionary<string, string>
        {
            ["Input.UserName"] = userName, ["Input.Email"] = $"{userName}@example.test", ["Input.Password"] = password, ["Input.ConfirmPassword"] = password,
        });
        for (var i = 0; i < 5; i++)
        {
            Assert.Contains(Neutral, (await AccountPages.SignInAsync(browser, userName, $"wrong-password-{i}")).Body);
        }

        var right = await AccountPages.SignInAsync(browser, userName, password);

        Assert.Equal("/account/login", right.Uri.AbsolutePath);
        Assert.Contains(Neutral, right.Body);
        Assert.DoesNotContain("Confirm your email address first", right.Body);
    }

    [SkippableFact]
    public async Task An_unconfirmed_account_cannot_sign_in_and_is_offered_a_new_link_but_only_with_the_right_password()
    {
        var browser = server.CreateBrowser();
        var userName = Unique.Name("unc");
        var email = $"{userName}@example.test";
        const string password = "another-good-passphrase";
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/register"), new Dictionary<string, string>
        {
            ["Input.UserName"] = userName, ["Input.Email"] = email, ["Input.Password"] = password, ["Input.ConfirmPassword"] = password,
        });

        var wrong = await AccountPages.SignInAsync(browser, userName, "not-the-password-at-all");
        Assert.Contains(Neutral, wrong.Body);
        Assert.DoesNotContain("Confirm your email address first", wrong.Body);

        var right = await AccountPages.SignInAsync(browser, userName, password);
        Assert.Equal("/account/login", right.Uri.AbsolutePath);
        Assert.Contains("Confirm your email address first", right.Body);
        Assert.NotNull(right.Document.QuerySelector("a[href='/account/resend-confirmation']"));

        var resend = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/resend-confirmation"),
            new Dictionary<string, string> { ["Input.Email"] = email });
        Assert.Contains("we have sent it a new link", resend.Body);
        await Mailbox.WaitForAsync(server, email, "Confirm your email address", skip: 1);
    }

    [SkippableFact]
    public async Task Registering_with_a_taken_email_answers_like_a_new_account_and_tells_the_owner_by_email()
    {
        var existing = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        const string password = "yet-another-passphrase";

        var answer = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/register"), new Dictionary<string, string>
        {
            ["Input.UserName"] = Unique.Name("dup"), ["Input.Email"] = existing.Email, ["Input.Password"] = password, ["Input.ConfirmPassword"] = password,
        });

        Assert.Equal("/account/register/check-email", answer.Uri.AbsolutePath);
        var notice = await Mailbox.WaitForAsync(server, existing.Email, "You already have an account");
        Assert.Contains("/account/forgot-password", notice.TextBody);
    }

    /// <summary>
    /// Addresses the form's check lets through but no email can be sent to (MimeKit cannot parse them), and a user
    /// name that is another account's email (the login page takes either): refused on the form, no account made.
    /// </summary>
    [SkippableTheory]
    [InlineData("a(@example.test", null)]
    [InlineData("\"@example.test", null)]
    [InlineData("a b@example.test", null)]
    [InlineData(null, "existing-email")]
    public async Task Registration_refuses_an_undeliverable_address_and_a_user_name_that_is_another_account_s_email(string? email, string? userNameIs)
    {
        var existing = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var userName = userNameIs is null ? Unique.Name("odd") : existing.Email;
        const string password = "a long enough password";

        var answer = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/register"), new Dictionary<string, string>
        {
            ["Input.UserName"] = userName, ["Input.Email"] = email ?? $"{Unique.Name("own")}@example.test",
            ["Input.Password"] = password, ["Input.ConfirmPassword"] = password,
        });

        Assert.True(answer.Status == HttpStatusCode.OK, $"{(int)answer.Status}: {answer.Body}");
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<Microsoft.AspNetCore.Identity.UserManager<IdentityServer.Accounts.ApplicationUser>>();
        Assert.Null(await users.FindByNameAsync(userName));
        if (email is not null)
        {
            Assert.Equal("/account/register", answer.Uri.AbsolutePath);
        }
        else
        {
            // Answered as for an address in use (nothing told about the other account), and its owner still signs in with it.
            Assert.Equal("/account/register/check-email", answer.Uri.AbsolutePath);
            Assert.Equal("/", (await AccountPages.SignInAsync(server.CreateBrowser(), existing.Email, existing.Password)).Uri.AbsolutePath);
        }
    }

    [SkippableFact]
    public async Task Registration_refuses_a_short_password_and_one_that_contains_the_user_name()
    {
        var browser = server.CreateBrowser();
        var userName = Unique.Name("pol");
        foreach (var (password, expected) in new[] { ("short-pw", "at least 10"), ($"my-{userName}-pass", "must not contain your user name") })
        {
            var answer = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/register"), new Dictionary<string, string>
            {
                ["Input.UserName"] = userName, ["Input.Email"] = $"{userName}@example.test", ["Input.Password"] = password, ["Input.ConfirmPassword"] = password,
            });
            Assert.Equal("/account/register", answer.Uri.AbsolutePath);
            Assert.Contains(expected, answer.Body, StringComparison.OrdinalIgnoreCase);
        }
    }

    [SkippableFact]
    public async Task A_password_reset_link_works_once_and_the_reset_revokes_refresh_tokens()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var browser = server.CreateBrowser();

        var asked = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"),
            new Dictionary<string, string> { ["Input.Email"] = user.Email });
        Assert.Contains("If an account uses that address", asked.Body);
        var link = Mailbox.Link(await Mailbox.WaitForAsync(server, user.Email, "Reset your password"), "/account/reset-password");

        const string newPassword = "a-brand-new-passphrase";
        var form = await browser.NavigateAsync(link);
        var done = await browser.SubmitAsync(form, new Dictionary<string, string> { ["Input.Password"] = newPassword, ["Input.ConfirmPassword"] = newPassword });
        Assert.Contains("Password changed", done.Body);

        var again = await browser.NavigateAsync(link);
        Assert.Contains("This link has expired or has already been used.", again.Body);
        var reused = await browser.SubmitAsync(form, new Dictionary<string, string> { ["Input.Password"] = "a-third-passphrase-x", ["Input.ConfirmPassword"] = "a-third-passphrase-x" });
        Assert.Contains("This link has expired or has already been used.", reused.Body);

        Assert.Contains(Neutral, (await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password)).Body);
        Assert.Equal("/", (await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, newPassword)).Uri.AbsolutePath);
        var refresh = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refresh)).GetProperty("error").GetString());
    }

    /// <summary>An admin's lockout is how a user is disabled: resetting one's own password must not lift it.</summary>
    [SkippableFact]
    public async Task A_user_locked_out_by_an_admin_stays_locked_out_after_resetting_the_password()
    {
        var user = await server.CreateUserAsync();
        var admin = await AdminApiCalls.AdminAsync(server);
        var locked = await admin.PutJsonAsync(AdminApiCalls.Path(AdminApiCalls.UsersUrl, user.Id),
            AdminApiCalls.Json(new { email = user.Email, email_verified = true, lockout_end = DateTimeOffset.UtcNow.AddDays(30) }));
        Assert.True((await locked.ExpectAsync(HttpStatusCode.OK)).GetProperty("locked_out").GetBoolean());
        var browser = server.CreateBrowser();

        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"),
            new Dictionary<string, string> { ["Input.Email"] = user.Email });
        var link = Mailbox.Link(await Mailbox.WaitForAsync(server, user.Email, "Reset your password"), "/account/reset-password");
        const string newPassword = "a-brand-new-passphrase";
        var done = await browser.SubmitAsync(await browser.NavigateAsync(link),
            new Dictionary<string, string> { ["Input.Password"] = newPassword, ["Input.ConfirmPassword"] = newPassword });
        Assert.Contains("Password changed", done.Body);

        var read = await admin.GetAsync(AdminApiCalls.Path(AdminApiCalls.UsersUrl, user.Id));
        Assert.True((await read.ExpectAsync(HttpStatusCode.OK)).GetProperty("locked_out").GetBoolean());
        var signIn = await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, newPassword);
        Assert.Equal("/account/login", signIn.Uri.AbsolutePath);
    }

    [SkippableFact]
    public async Task Forgot_password_for_an_unknown_address_answers_the_same_and_sends_nothing()
    {
        var browser = server.CreateBrowser();
        var unknown = $"{Unique.Name("nobody")}@example.test";

        var answer = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"),
            new Dictionary<string, string> { ["Input.Email"] = unknown });

        Assert.Equal(HttpStatusCode.OK, answer.Status);
        Assert.Contains("If an account uses that address", answer.Body);
        // A known address's email arrives; by then an email to the unknown one would have too (one queue, in order).
        var known = await server.CreateUserAsync();
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"), new Dictionary<string, string> { ["Input.Email"] = known.Email });
        await Mailbox.WaitForAsync(server, known.Email, "Reset your password");
        Assert.DoesNotContain(Mailbox.Messages(server), m => m.To.Mailboxes.Any(a => a.Address == unknown));
    }

    [SkippableFact]
    public async Task Lockout_after_five_wrong_passwords_and_the_same_message_for_unknown_wrong_and_locked()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();

        var unknown = await AccountPages.SignInAsync(browser, Unique.Name("ghost"), "whatever-password");
        for (var i = 0; i < 5; i++)
        {
            Assert.Contains(Neutral, (await AccountPages.SignInAsync(browser, user.UserName, $"wrong-password-{i}")).Body);
        }

        var locked = await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        Assert.Equal("/account/login", locked.Uri.AbsolutePath);
        Assert.Contains(Neutral, unknown.Body);
        Assert.Contains(Neutral, locked.Body);
        Assert.Equal(ErrorText(unknown), ErrorText(locked));
    }

    [SkippableFact]
    public async Task Changing_the_password_revokes_refresh_tokens_and_ends_other_sessions_but_not_this_one()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var other = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, other, client, user, "openid offline_access");
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        const string newPassword = "changed-passphrase-1";
        var changed = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/password"), new Dictionary<string, string>
        {
            ["Input.CurrentPassword"] = user.Password, ["Input.NewPassword"] = newPassword, ["Input.ConfirmPassword"] = newPassword,
        });

        Assert.Contains("Your password has been changed", changed.Body);
        Assert.Equal("/account", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(other, "/account")).Uri.AbsolutePath);
        var refresh = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refresh)).GetProperty("error").GetString());
        await Mailbox.WaitForAsync(server, user.Email, "Your password was changed");
    }

    /// <summary>
    /// The account pages that ask for the password count wrong ones towards the lockout, as the login page does: a
    /// session (a stolen one) cannot try passwords there without limit.
    /// </summary>
    [SkippableTheory]
    [InlineData("/account/password")]
    [InlineData("/account/email")]
    public async Task Wrong_passwords_on_an_account_page_lock_the_account_out_and_end_the_session(string path)
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        // Another session of the account, standing for a copy of this one's cookie that ignores being signed out.
        var copy = server.CreateBrowser();
        await AccountPages.SignInAsync(copy, user.UserName, user.Password);
        var fields = path == "/account/password"
            ? new Dictionary<string, string> { ["Input.CurrentPassword"] = "not-the-password-1", ["Input.NewPassword"] = "a-new-passphrase-1", ["Input.ConfirmPassword"] = "a-new-passphrase-1" }
            : new Dictionary<string, string> { ["Input.NewEmail"] = $"{Unique.Name("new")}@example.test", ["Input.Password"] = "not-the-password-1" };

        BrowserPage page;
        var attempts = 0;
        do
        {
            page = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, path), fields);
            attempts++;
        }
        while (page.Uri.AbsolutePath == path && attempts < 10);

        Assert.Equal(5, attempts); // Accounts:Lockout:MaxFailedAttempts
        Assert.Equal("/account/login", page.Uri.AbsolutePath);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(copy, "/account")).Uri.AbsolutePath);
        Assert.Empty(await SessionRows.OfAsync(server, user.Id));
        var again = await AccountPages.SignInAsync(server.CreateBrowser(), user.UserName, user.Password);
        Assert.Equal("/account/login", again.Uri.AbsolutePath);
    }

    [SkippableFact]
    public async Task Sign_out_everywhere_ends_every_session_and_revokes_refresh_tokens()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var other = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, other, client, user, "openid offline_access");
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var done = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/sessions"), selector: "#sign-out-everywhere");

        Assert.Contains("Every session of your account has been signed out", done.Body);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await AccountPages.OpenAsync(other, "/account")).Uri.AbsolutePath);
        var refresh = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refresh)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task Changing_the_email_takes_effect_only_through_the_link_sent_to_the_new_address()
    {
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var newEmail = $"{Unique.Name("new")}@example.test";

        var asked = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/email"),
            new Dictionary<string, string> { ["Input.NewEmail"] = newEmail, ["Input.Password"] = user.Password });
        Assert.Contains($"We have sent a confirmation link to {newEmail}", asked.Body);
        Assert.Contains(user.Email, (await AccountPages.OpenAsync(browser, "/account")).Body);

        var link = Mailbox.Link(await Mailbox.WaitForAsync(server, newEmail, "Confirm your new email address"), "/account/confirm-email-change");
        // The page shows the address only for the link as sent: not another address put in its query.
        const string forged = "call-support-now@attacker.example";
        var query = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(new Uri(link).Query);
        var forgedLink = Microsoft.AspNetCore.WebUtilities.QueryHelpers.AddQueryString(new Uri(link).GetLeftPart(UriPartial.Path),
            query.Select(p => KeyValuePair.Create(p.Key, p.Key == "email" ? (string?)forged : p.Value.ToString())));
        var forgedPage = await AccountPages.OpenAsync(browser, forgedLink);
        Assert.DoesNotContain(forged, forgedPage.Body);
        Assert.Contains("This link cannot be used", forgedPage.Body);
        Assert.Contains($"Use <strong>{newEmail}</strong> for your account?", (await AccountPages.OpenAsync(browser, link)).Body);
        var changed = await AccountPages.OpenAndConfirmAsync(browser, link);

        Assert.Contains("Email address changed", changed.Body);
        // The change gave the account a new security stamp; the browser that confirmed it stays signed in.
        Assert.Contains(newEmail, (await AccountPages.OpenAsync(browser, "/account")).Body);
        Assert.Equal("/", (await AccountPages.SignInAsync(server.CreateBrowser(), newEmail, user.Password)).Uri.AbsolutePath);
        // Used, the link says so as soon as it is opened (the change gave a new security stamp, which ends its token).
        Assert.Contains("This link cannot be used", (await AccountPages.OpenAsync(browser, link)).Body);
        // The old address no longer gets the account's emails (a reset link among them): it is told, without the new one.
        var notice = await Mailbox.WaitForAsync(server, user.Email, "Your email address was changed");
        Assert.DoesNotContain(newEmail, notice.TextBody);
    }

    [SkippableFact]
    public async Task The_profile_name_is_saved_and_becomes_the_name_claim()
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var saved = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account"), new Dictionary<string, string> { ["DisplayName"] = "Ada Lovelace" });

        Assert.Contains("Your profile has been saved", saved.Body);
        var tokens = await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid profile");
        Assert.Equal("Ada Lovelace", Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("name").GetString());
    }

    /// <summary>The name reaches applications (the name claim) and their logs and terminals: no control characters, nor
    /// bidirectional formatting ones that make it read other than it is.</summary>
    [SkippableTheory]
    [InlineData("Ada\u001b[31m Lovelace")]
    [InlineData("Ada \u202Eecalevol")]
    public async Task A_profile_name_with_control_or_bidirectional_formatting_characters_is_refused(string name)
    {
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);

        var refused = await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account"), new Dictionary<string, string> { ["DisplayName"] = name });

        Assert.DoesNotContain("Your profile has been saved", refused.Body);
        Assert.Contains("must not contain control characters", refused.Body);
        var tokens = await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid profile");
        Assert.Equal(user.UserName, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("name").GetString());
    }

    [SkippableFact]
    public async Task My_account_pages_need_a_signed_in_user()
    {
        var browser = server.CreateBrowser();
        foreach (var path in new[] { "/account", "/account/password", "/account/email", "/account/two-factor", "/account/passkeys", "/account/apps", "/account/sessions" })
        {
            var page = await AccountPages.OpenAsync(browser, path);
            Assert.True(page.Uri.AbsolutePath == "/account/login", $"{path} -> {page.Uri}");
        }
    }

    /// <summary>
    /// An account whose only ways to sign in are two passkeys, each removed in its own tab of one browser (one session,
    /// which a removal keeps while it ends the account's other sessions) at the same moment: the removals take turns
    /// (the first is held while it deletes, and the second starts then), so the second sees the first's and is refused
    /// as the last way to sign in. Before, both passed the check and the account was left with none (Identity's
    /// concurrency stamp did not stop it).
    /// </summary>
    [SkippableFact]
    public async Task Two_tabs_removing_an_accounts_last_two_passkeys_at_the_same_moment_leave_one()
    {
        var user = await server.CreateUserAsync();
        var (first, second) = (RandomNumberGenerator.GetBytes(16), RandomNumberGenerator.GetBytes(16));
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            var account = (await users.FindByIdAsync(user.Id))!;
            foreach (var id in new[] { first, second })
            {
                Assert.True((await users.AddOrUpdatePasskeyAsync(account, new UserPasskeyInfo(id, RandomNumberGenerator.GetBytes(77), DateTimeOffset.UtcNow, 0,
                    null, isUserVerified: true, isBackupEligible: false, isBackedUp: false, attestationObject: [], clientDataJson: []))).Succeeded);
            }
        }

        static string RemoveFormOf(byte[] id) => $"form[action*=Remove]:has(input[value='{WebEncoders.Base64UrlEncode(id)}'])";
        var otherTab = server.CreateBrowser();
        Task<BrowserPage>? racing = null;
        await using var stepping = server.ServerThatStepsInBeforeSaving<IdentityUserPasskey<string>>(e => e.State == EntityState.Deleted, async () =>
        {
            racing = otherTab.SubmitAsync(await AccountPages.OpenAsync(otherTab, "/account/passkeys"), selector: RemoveFormOf(second));
            await server.UntilDoneOrWaitingForALockAsync(racing, "pg_advisory_xact_lock");
        });
        var tab = new AttachedServer(stepping, server.Provider).CreateBrowser();
        await AccountPages.SignInAsync(tab, user.UserName, user.Password);
        otherTab.Cookies.Add(tab.Cookies.GetAllCookies()); // the same browser's other tab (both instances read its cookies)
        // No password any more (the sessions stay: the security stamp is unchanged): the passkeys are the only ways.
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>().Users.Where(u => u.Id == user.Id)
                .ExecuteUpdateAsync(set => set.SetProperty(u => u.PasswordHash, (string?)null));
        }

        var firstAnswer = await tab.SubmitAsync(await AccountPages.OpenAsync(tab, "/account/passkeys"), selector: RemoveFormOf(first));
        Assert.NotNull(racing);
        var secondAnswer = await racing;

        await using var check = server.Factory.Services.CreateAsyncScope();
        var stored = check.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        Assert.Single(await stored.GetPasskeysAsync((await stored.FindByIdAsync(user.Id))!));
        Assert.Contains(new[] { firstAnswer, secondAnswer }, answer => answer.Body.Contains("This is your only way to sign in", StringComparison.Ordinal));
    }

    private static string ErrorText(BrowserPage page) => page.Document.QuerySelector(".error")?.TextContent.Trim() ?? "(none)";
}

public sealed class SqliteSelfServiceTests(SqliteAccountsFixture server) : SelfServiceTests<SqliteAccountsFixture>(server), IClassFixture<SqliteAccountsFixture>;

public sealed class PostgreSqlSelfServiceTests(PostgreSqlAccountsFixture server) : SelfServiceTests<PostgreSqlAccountsFixture>(server), IClassFixture<PostgreSqlAccountsFixture>;
