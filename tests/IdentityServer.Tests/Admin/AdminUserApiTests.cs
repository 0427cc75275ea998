using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Accounts;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// Users and roles in the admin API: Identity's rules (user name, password policy) apply, passwords are never
/// returned, lockout and password resets take effect on tokens at once, and at least one admin always remains.
/// </summary>
public abstract class AdminUserApiTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_user_created_with_a_password_can_sign_in_and_the_password_is_never_returned()
    {
        var admin = await AdminAsync(server);
        var userName = Unique.Name("erin");
        var password = $"pass-{Guid.NewGuid():N}";

        var created = await admin.PostJsonAsync(UsersUrl, Json(new { user_name = userName, email = $"{userName}@example.test", email_verified = true, password }));
        var raw = await created.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var user = JsonDocument.Parse(raw).RootElement;
        var id = user.GetProperty("id").GetString()!;

        Assert.Equal($"/api/admin/users/{id}", created.Headers.Location?.OriginalString);
        Assert.True(user.GetProperty("has_password").GetBoolean());
        Assert.True(user.GetProperty("email_verified").GetBoolean());
        Assert.False(user.GetProperty("locked_out").GetBoolean());
        foreach (var body in new[] { raw, await (await admin.GetAsync(Path(UsersUrl, id))).Content.ReadAsStringAsync(),
                     await (await admin.GetAsync($"{UsersUrl}?search={userName}")).Content.ReadAsStringAsync(),
                     (await AuditForAsync(admin, "user", id)).ToString() })
        {
            Assert.DoesNotContain(password, body);
            Assert.DoesNotContain("\"password\"", body);
            Assert.DoesNotContain("AQAAAA", body); // the start of an Identity password hash
        }

        var tokens = await SignInAsync(new TestUser(id, userName, password, $"{userName}@example.test"));
        Assert.False(string.IsNullOrEmpty(tokens.GetProperty("access_token").GetString()));
    }

    [SkippableFact]
    public async Task A_user_without_a_password_is_created_and_has_none()
    {
        var admin = await AdminAsync(server);

        var created = await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = Unique.Name("sso") }))).ExpectAsync(HttpStatusCode.Created);

        Assert.False(created.GetProperty("has_password").GetBoolean());
        Assert.Empty(created.GetProperty("roles").EnumerateArray());
    }

    /// <summary>A lockout end with an offset is the same moment in UTC (PostgreSQL stores only UTC).</summary>
    [SkippableFact]
    public async Task A_lockout_end_with_an_offset_is_kept_as_that_moment()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var lockoutEnd = new DateTimeOffset(2999, 1, 1, 2, 0, 0, TimeSpan.FromHours(2));

        var locked = await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = user.Email, email_verified = true, lockout_end = lockoutEnd }));

        var body = await locked.ExpectAsync(HttpStatusCode.OK);
        Assert.True(body.GetProperty("locked_out").GetBoolean());
        Assert.Equal(lockoutEnd, body.GetProperty("lockout_end").GetDateTimeOffset());
    }

    [SkippableFact]
    public async Task Null_roles_are_no_roles()
    {
        var admin = await AdminAsync(server);

        var created = await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = Unique.Name("noroles"), roles = (string[]?)null })))
            .ExpectAsync(HttpStatusCode.Created);

        Assert.Empty(created.GetProperty("roles").EnumerateArray());
    }

    [SkippableTheory]
    [InlineData("""{"user_name":"NAME","password":"short"}""", HttpStatusCode.BadRequest, "invalid_request", "password")]
    [InlineData("""{"password":"long enough password"}""", HttpStatusCode.BadRequest, "invalid_request", "user_name")]
    [InlineData("""{"user_name":"NAME","roles":["no-such-role"]}""", HttpStatusCode.BadRequest, "invalid_request", "roles")]
    [InlineData("""{"user_name":"NAME","email":"not an email"}""", HttpStatusCode.BadRequest, "invalid_request", "email")]
    [InlineData("""{"user_name":"NAME","lockout_end":"someday"}""", HttpStatusCode.BadRequest, "invalid_request", "lockout_end")]
    [InlineData("""{"user_name":"NAME","is_admin":true}""", HttpStatusCode.BadRequest, "invalid_request", "is_admin")]
    public async Task An_invalid_user_is_refused_naming_the_field(string json, HttpStatusCode status, string error, string field)
    {
        var admin = await AdminAsync(server);
        var userName = Unique.Name("bad");

        await (await admin.PostJsonAsync(UsersUrl, json.Replace("NAME", userName))).ExpectErrorAsync(status, error, field);

        Assert.Equal(0, (await admin.GetJsonAsync($"{UsersUrl}?search={userName}")).GetProperty("total").GetInt32());
    }

    [SkippableFact]
    public async Task A_user_name_longer_than_its_column_is_refused_naming_the_field()
    {
        // 256 is Identity's column; SQLite would store a longer name, PostgreSQL and SQL Server refuse it.
        var admin = await AdminAsync(server);
        var userName = Unique.Name("long");

        await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = userName.PadRight(257, 'a'), password = "long enough password" })))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "user_name");

        Assert.Equal(0, (await admin.GetJsonAsync($"{UsersUrl}?search={userName}")).GetProperty("total").GetInt32());
        await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = userName.PadRight(256, 'a'), password = "long enough password" })))
            .ExpectAsync(HttpStatusCode.Created);
    }

    [SkippableFact]
    public async Task A_user_name_in_use_is_a_conflict_and_an_unknown_user_is_not_found()
    {
        var admin = await AdminAsync(server);
        var existing = await server.CreateUserAsync();

        await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = existing.UserName }))).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict", "user_name");
        var missing = Path(UsersUrl, Guid.NewGuid().ToString());
        await (await admin.GetAsync(missing)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.PutJsonAsync(missing, "{}")).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.DeleteAsync(missing, null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.PostJsonAsync(missing + "/password", Json(new { password = "long enough password" }))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
    }

    [SkippableFact]
    public async Task A_user_page_or_page_size_that_is_not_a_whole_number_is_refused_naming_the_parameter() =>
        await AssertPagingThatIsNotAWholeNumberIsRefusedNamingTheParameterAsync(await AdminAsync(server), UsersUrl);

    [SkippableFact]
    public async Task A_user_page_past_the_end_is_empty_however_large_its_number()
    {
        var admin = await AdminAsync(server);
        var userName = Unique.Name("far");
        await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = userName }))).ExpectAsync(HttpStatusCode.Created);

        await AssertPagesPastTheEndAreEmptyAsync(admin, UsersUrl, userName);
    }

    [SkippableFact]
    public async Task Users_are_searched_by_user_name_or_email_a_page_at_a_time()
    {
        var admin = await AdminAsync(server);
        var tag = Unique.Name("team");
        foreach (var i in new[] { 1, 2, 3 })
        {
            await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = $"{tag}-{i}" }))).ExpectAsync(HttpStatusCode.Created);
        }

        var byMail = Unique.Name("mail");
        await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = byMail, email = $"{byMail}@{tag}.example.test" }))).ExpectAsync(HttpStatusCode.Created);

        var first = await admin.GetJsonAsync($"{UsersUrl}?search={tag.ToUpperInvariant()}&page_size=3");
        var second = await admin.GetJsonAsync($"{UsersUrl}?search={tag}&page_size=3&page=2");

        Assert.Equal(4, first.GetProperty("total").GetInt32());
        Assert.Equal(3, first.GetProperty("items").GetArrayLength());
        Assert.Equal(1, second.GetProperty("items").GetArrayLength());
        var names = first.GetProperty("items").EnumerateArray().Concat(second.GetProperty("items").EnumerateArray())
            .Select(u => u.GetProperty("user_name").GetString()).Order(StringComparer.Ordinal);
        Assert.Equal(new[] { $"{tag}-1", $"{tag}-2", $"{tag}-3", byMail }.Order(StringComparer.Ordinal), names);
    }

    [SkippableFact]
    public async Task An_update_replaces_email_roles_and_verification_and_a_stale_etag_loses_nothing()
    {
        var admin = await AdminAsync(server);
        var role = await CreateRoleAsync(admin);
        var user = await server.CreateUserAsync();
        var read = await admin.GetAsync(Path(UsersUrl, user.Id));
        await read.ExpectAsync(HttpStatusCode.OK);

        var updated = await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = "new@example.test", email_verified = false, roles = new[] { role } }), ETagOf(read));
        var body = await updated.ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("new@example.test", body.GetProperty("email").GetString());
        Assert.False(body.GetProperty("email_verified").GetBoolean());
        Assert.Equal([role], AdminClientApiTests<TFixture>.Strings(body, "roles"));
        Assert.NotEqual(ETagOf(read), ETagOf(updated));

        await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = "stale@example.test" }), ETagOf(read)))
            .ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = "x@example.test", password = "long enough password" })))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "password");
        await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { user_name = Unique.Name("renamed") })))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "user_name");
        var now = await admin.GetJsonAsync(Path(UsersUrl, user.Id));
        Assert.Equal("new@example.test", now.GetProperty("email").GetString());
        Assert.Equal([role], AdminClientApiTests<TFixture>.Strings(now, "roles"));
        var audit = (await AuditForAsync(admin, "user", user.Id)).EnumerateArray().Single();
        Assert.Equal(user.Email, audit.GetProperty("before").GetProperty("email").GetString());
        Assert.Equal("new@example.test", audit.GetProperty("after").GetProperty("email").GetString());
    }

    /// <summary>What a GET answered goes back as a PUT, as clients and scopes do: its read-only fields sent back as read are accepted.</summary>
    [SkippableFact]
    public async Task A_user_read_is_written_back_as_is_but_its_read_only_fields_cannot_be_changed()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var read = await admin.GetAsync(Path(UsersUrl, user.Id));
        var document = System.Text.Json.Nodes.JsonNode.Parse(await read.Content.ReadAsStringAsync())!.AsObject();

        var written = await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), document.ToJsonString(), ETagOf(read))).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(document.ToJsonString(), written.GetRawText());

        foreach (var (field, value) in new (string, System.Text.Json.Nodes.JsonNode)[] { ("id", Guid.NewGuid().ToString()), ("has_password", false), ("locked_out", true) })
        {
            var changed = document.DeepClone().AsObject();
            changed[field] = value.DeepClone();
            var refused = await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), changed.ToJsonString())).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", field);
            Assert.Contains(field, refused.GetProperty("error_description").GetString());
        }

        // locked_out may also say what the request makes of the user: locked out until lockout_end.
        var locking = document.DeepClone().AsObject();
        locking["lockout_end"] = DateTimeOffset.UtcNow.AddDays(1);
        locking["locked_out"] = true;
        Assert.True((await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), locking.ToJsonString())).ExpectAsync(HttpStatusCode.OK))
            .GetProperty("locked_out").GetBoolean());

        var copy = document.DeepClone().AsObject();
        copy["user_name"] = Unique.Name("copy");
        copy.Remove("email");
        await (await admin.PostJsonAsync(UsersUrl, copy.ToJsonString())).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "id");
        copy.Remove("id");
        await (await admin.PostJsonAsync(UsersUrl, copy.ToJsonString())).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "has_password");
        copy["has_password"] = false;
        await (await admin.PostJsonAsync(UsersUrl, copy.ToJsonString())).ExpectAsync(HttpStatusCode.Created);
    }

    [SkippableFact]
    public async Task Locking_a_user_out_stops_their_refresh_token_and_unlocking_lets_them_sign_in_again()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var tokens = await SignInAsync(user);
        var client = new TestClient(tokens.GetProperty("client_id_for_test").GetString()!, null, new());

        var locked = await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = user.Email, email_verified = true, lockout_end = DateTimeOffset.UtcNow.AddDays(1) }));
        Assert.True((await locked.ExpectAsync(HttpStatusCode.OK)).GetProperty("locked_out").GetBoolean());
        var refreshed = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refreshed)).GetProperty("error").GetString());

        var unlocked = await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = user.Email, email_verified = true }));
        Assert.False((await unlocked.ExpectAsync(HttpStatusCode.OK)).GetProperty("locked_out").GetBoolean());
        Assert.False(string.IsNullOrEmpty((await SignInAsync(user)).GetProperty("access_token").GetString()));
    }

    [SkippableFact]
    public async Task A_password_reset_must_meet_the_policy_and_replaces_the_old_password_and_tokens()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var tokens = await SignInAsync(user);
        var client = new TestClient(tokens.GetProperty("client_id_for_test").GetString()!, null, new());
        var url = Path(UsersUrl, user.Id) + "/password";

        await (await admin.PostJsonAsync(url, Json(new { password = "short" }))).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "password");
        await (await admin.PostJsonAsync(url, "{}")).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "password");
        await (await admin.PostJsonAsync(url, Json(new { password = "long enough password" }), "\"stale\"")).ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        var reset = await admin.PostJsonAsync(url, Json(new { password = "a brand new password" }));

        Assert.Equal(HttpStatusCode.NoContent, reset.StatusCode);
        Assert.Empty(await reset.Content.ReadAsByteArrayAsync());
        var refreshed = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal(HttpStatusCode.BadRequest, refreshed.StatusCode);
        var browser = server.CreateBrowser();
        var failed = await OAuth.SignInAsync(browser, await browser.NavigateAsync(AdminPages.Url("/account/login")), user, stopAt: _ => false);
        Assert.Equal("/account/login", failed.Uri.AbsolutePath);
        Assert.False(string.IsNullOrEmpty((await SignInAsync(user with { Password = "a brand new password" })).GetProperty("access_token").GetString()));
        Assert.Equal("user.password_reset", (await AuditForAsync(admin, "user", user.Id)).EnumerateArray().First().GetProperty("action").GetString());
    }

    /// <summary>
    /// The reset revokes the user's tokens, and the session cookie is checked again only after
    /// <c>Accounts:SessionValidationInterval</c>: a code issued to that session in the meantime would have brought
    /// refresh tokens that outlive the reset. The authorization endpoint checks the session's stamp on every request.
    /// </summary>
    [SkippableFact]
    public async Task A_password_reset_ends_the_users_session_at_the_authorization_endpoint_at_once()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        await OAuth.SignInAndRedeemAsync(server, browser, client, user, "openid offline_access");

        Assert.Equal(HttpStatusCode.NoContent, (await admin.PostJsonAsync(Path(UsersUrl, user.Id) + "/password", Json(new { password = "a brand new password" }))).StatusCode);
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid offline_access", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }), OAuth.IsApp);

        Assert.NotNull(page.RedirectTarget);
        var answer = OAuth.QueryOf(page.RedirectTarget!);
        Assert.False(answer.ContainsKey("code"), "The ended session was given a code");
        Assert.Equal("login_required", answer["error"]);
    }

    /// <summary>
    /// Within the cookie's check interval an ended session could open the account pages, and the authenticator page
    /// re-issues the cookie with the account's new stamp: a stolen session would have come back to life, and with
    /// it the authorization endpoint. Every request with a session cookie checks the stamp.
    /// </summary>
    [SkippableFact]
    public async Task A_password_reset_ends_the_users_session_on_the_account_pages_too()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var browser = server.CreateBrowser();
        await Accounts.AccountPages.SignInAsync(browser, user.UserName, user.Password);
        Assert.Equal("/account", (await Accounts.AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);

        Assert.Equal(HttpStatusCode.NoContent, (await admin.PostJsonAsync(Path(UsersUrl, user.Id) + "/password", Json(new { password = "a brand new password" }))).StatusCode);

        Assert.Empty(await Accounts.SessionRows.OfAsync(server, user.Id));
        Assert.Equal("/account/login", (await Accounts.AccountPages.OpenAsync(browser, "/account/two-factor/authenticator")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await Accounts.AccountPages.OpenAsync(browser, "/account")).Uri.AbsolutePath);
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", Pkce.Create(),
            extra: new Dictionary<string, string?> { ["prompt"] = "none" }), OAuth.IsApp);
        Assert.Equal("login_required", OAuth.QueryOf(page.RedirectTarget!)["error"]);
    }

    /// <summary>
    /// An admin sees where a user is signed in, ends one session (that browser is signed out, the others are not), or
    /// ends them all as the user's "sign out everywhere" does (refresh tokens revoked too); each end is audited.
    /// </summary>
    [SkippableFact]
    public async Task A_users_sessions_are_listed_and_ended_one_at_a_time_or_all_at_once()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var client = await server.CreatePublicClientAsync();
        var phone = server.CreateBrowser();
        var tokens = await OAuth.SignInAndRedeemAsync(server, phone, client, user, "openid offline_access");
        var laptop = server.CreateBrowser();
        await Accounts.AccountPages.SignInAsync(laptop, user.UserName, user.Password);
        var sessionsUrl = Path(UsersUrl, user.Id) + "/sessions";

        var listed = (await admin.GetJsonAsync(sessionsUrl)).EnumerateArray().ToList();
        Assert.Equal(2, listed.Count);
        Assert.All(listed, s => Assert.Equal(["pwd"], s.GetProperty("amr").EnumerateArray().Select(m => m.GetString()!).ToArray()));
        var laptopSession = listed[0].GetProperty("id").GetString()!; // newest first
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"{sessionsUrl}/{laptopSession}", null)).StatusCode);
        await (await admin.DeleteAsync($"{sessionsUrl}/{laptopSession}", null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");

        Assert.Equal("/account/login", (await Accounts.AccountPages.OpenAsync(laptop, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account", (await Accounts.AccountPages.OpenAsync(phone, "/account")).Uri.AbsolutePath);
        Assert.Single((await admin.GetJsonAsync(sessionsUrl)).EnumerateArray());
        await (await admin.DeleteAsync(sessionsUrl + "/", null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found"); // an empty session id
        Assert.Single((await admin.GetJsonAsync(sessionsUrl)).EnumerateArray());

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(sessionsUrl, null)).StatusCode);

        Assert.Empty((await admin.GetJsonAsync(sessionsUrl)).EnumerateArray());
        Assert.Equal("/account/login", (await Accounts.AccountPages.OpenAsync(phone, "/account")).Uri.AbsolutePath);
        var refresh = await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refresh)).GetProperty("error").GetString());
        var actions = (await AuditForAsync(admin, "user", user.Id)).EnumerateArray().Select(e => e.GetProperty("action").GetString()).ToList();
        Assert.Equal(["user.sessions_ended", "user.session_ended"], actions.Take(2));
        await (await admin.GetAsync(Path(UsersUrl, "no-such-user") + "/sessions")).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
    }

    /// <summary>
    /// Without If-Match a change is unconditional: one made while the user changes (here an admin ends their sessions
    /// at the same moment, which gives the user a new stamp) is made on top of that change, not answered 412.
    /// </summary>
    [SkippableFact]
    public async Task A_change_without_If_Match_racing_another_change_to_the_user_is_made_anyway()
    {
        var admin = await AdminAsync(server);
        for (var round = 0; round < 5; round++)
        {
            var user = await server.CreateUserAsync();
            var answers = await Task.WhenAll(
                admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = user.Email, email_verified = true, lockout_end = DateTimeOffset.UtcNow.AddHours(1) })),
                admin.DeleteAsync(Path(UsersUrl, user.Id) + "/sessions", null));

            Assert.Equal(HttpStatusCode.OK, answers[0].StatusCode);
            Assert.Equal(HttpStatusCode.NoContent, answers[1].StatusCode);
            Assert.True((await admin.GetJsonAsync(Path(UsersUrl, user.Id))).GetProperty("locked_out").GetBoolean());
        }
    }

    [SkippableFact]
    public async Task A_deleted_user_is_gone_and_their_refresh_token_stops_working()
    {
        var admin = await AdminAsync(server);
        var user = await server.CreateUserAsync();
        var tokens = await SignInAsync(user);
        var client = new TestClient(tokens.GetProperty("client_id_for_test").GetString()!, null, new());
        var read = await admin.GetAsync(Path(UsersUrl, user.Id));

        await (await admin.DeleteAsync(Path(UsersUrl, user.Id), "\"stale\"")).ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(Path(UsersUrl, user.Id), ETagOf(read))).StatusCode);

        await (await admin.GetAsync(Path(UsersUrl, user.Id))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(HttpStatusCode.BadRequest, (await OAuth.RefreshAsync(server, client, tokens.GetProperty("refresh_token").GetString()!)).StatusCode);
        var audit = (await AuditForAsync(admin, "user", user.Id)).EnumerateArray().First();
        Assert.Equal("user.deleted", audit.GetProperty("action").GetString());
        Assert.Equal(user.UserName, audit.GetProperty("before").GetProperty("user_name").GetString());
    }

    /// <summary>
    /// Emails still queued for the deleted user go with them, whatever their address: a reset link to the account's
    /// address, and an email change link to a new address not yet confirmed.
    /// </summary>
    [SkippableFact]
    public async Task A_deleted_users_queued_emails_go_with_them_whatever_their_address()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        await using var factory = await Mailbox.ServerHoldingEmailsAsync(server);
        var attached = new AttachedServer(factory, server.Provider);
        var user = await attached.CreateUserAsync();
        var browser = attached.CreateBrowser();
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/forgot-password"), new Dictionary<string, string> { ["Input.Email"] = user.Email });
        await AccountPages.SignInAsync(browser, user.UserName, user.Password);
        var newEmail = $"{Unique.Name("new")}@example.test";
        await browser.SubmitAsync(await AccountPages.OpenAsync(browser, "/account/email"),
            new Dictionary<string, string> { ["Input.NewEmail"] = newEmail, ["Input.Password"] = user.Password });
        await Eventually.TrueAsync(async () => await Mailbox.QueuedForAsync(attached, user.Email) == 1
            && await Mailbox.QueuedForAsync(attached, newEmail) == 1, TimeSpan.FromSeconds(15), "both emails stored");

        Assert.Equal(HttpStatusCode.NoContent, (await (await AdminAsync(attached)).DeleteAsync(Path(UsersUrl, user.Id), null)).StatusCode);

        Assert.Equal(0, await Mailbox.QueuedForAsync(attached, user.Email));
        Assert.Equal(0, await Mailbox.QueuedForAsync(attached, newEmail));
    }

    /// <summary>The last two admins demoted at the same moment: each request alone would see the other still an admin.</summary>
    [SkippableFact]
    public async Task The_last_two_admins_demoted_at_once_leave_one_admin()
    {
        var admin = await AdminAsync(server);
        for (var round = 0; round < 6; round++)
        {
            var pair = new[] { await server.CreateUserAsync(null, "admin"), await server.CreateUserAsync(null, "admin") };
            var others = (await admin.GetJsonAsync($"{UsersUrl}?page_size=200")).GetProperty("items").EnumerateArray()
                .Where(u => pair.All(p => p.Id != u.GetProperty("id").GetString()) && AdminClientApiTests<TFixture>.Strings(u, "roles").Contains("admin"));
            foreach (var other in others)
            {
                await (await admin.PutJsonAsync(Path(UsersUrl, other.GetProperty("id").GetString()!),
                    Json(new { email = other.GetProperty("email").GetString(), roles = Array.Empty<string>() }))).ExpectAsync(HttpStatusCode.OK);
            }

            var demotions = await Task.WhenAll(pair.Select(user =>
                admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = user.Email, roles = Array.Empty<string>() }))));

            Assert.Contains(demotions, d => d.StatusCode == HttpStatusCode.Conflict);
            var admins = (await admin.GetJsonAsync($"{UsersUrl}?page_size=200")).GetProperty("items").EnumerateArray()
                .Count(u => AdminClientApiTests<TFixture>.Strings(u, "roles").Contains("admin") && !u.GetProperty("locked_out").GetBoolean());
            Assert.Equal(1, admins);
        }
    }

    [SkippableFact]
    public async Task The_last_active_admin_can_be_neither_demoted_nor_locked_out_nor_deleted()
    {
        var admin = await AdminAsync(server);
        var last = await server.CreateUserAsync(null, "admin");
        // Every other admin of this test class's database steps down, leaving one.
        var others = (await admin.GetJsonAsync($"{UsersUrl}?page_size=200")).GetProperty("items").EnumerateArray()
            .Where(u => u.GetProperty("id").GetString() != last.Id && AdminClientApiTests<TFixture>.Strings(u, "roles").Contains("admin"));
        foreach (var other in others)
        {
            await (await admin.PutJsonAsync(Path(UsersUrl, other.GetProperty("id").GetString()!), Json(new { email = other.GetProperty("email").GetString(), roles = Array.Empty<string>() })))
                .ExpectAsync(HttpStatusCode.OK);
        }

        var url = Path(UsersUrl, last.Id);
        await (await admin.PutJsonAsync(url, Json(new { email = last.Email, roles = Array.Empty<string>() }))).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict", "roles");
        await (await admin.PutJsonAsync(url, Json(new { email = last.Email, roles = new[] { "admin" }, lockout_end = DateTimeOffset.UtcNow.AddHours(1) })))
            .ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
        await (await admin.DeleteAsync(url, null)).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
        Assert.Equal(["admin"], AdminClientApiTests<TFixture>.Strings(await admin.GetJsonAsync(url), "roles"));

        // With another admin, the first one may step down.
        await server.CreateUserAsync(null, "admin");
        await (await admin.PutJsonAsync(url, Json(new { email = last.Email, roles = Array.Empty<string>() }))).ExpectAsync(HttpStatusCode.OK);
    }

    [SkippableFact]
    public async Task Roles_are_listed_with_their_users_created_and_deleted_but_the_admin_role_stays()
    {
        var admin = await AdminAsync(server);
        var role = await CreateRoleAsync(admin);
        var user = await server.CreateUserAsync();
        await (await admin.PutJsonAsync(Path(UsersUrl, user.Id), Json(new { email = user.Email, roles = new[] { role } }))).ExpectAsync(HttpStatusCode.OK);

        var listed = (await admin.GetJsonAsync(RolesUrl)).EnumerateArray().ToList();
        Assert.Equal(1, listed.Single(r => r.GetProperty("name").GetString() == role).GetProperty("user_count").GetInt32());
        Assert.Contains(listed, r => r.GetProperty("name").GetString() == "admin");

        await (await admin.PostJsonAsync(RolesUrl, Json(new { name = role }))).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict", "name");
        await (await admin.PostJsonAsync(RolesUrl, Json(new { name = "" }))).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "name");
        await (await admin.DeleteAsync(Path(RolesUrl, "admin"), null)).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
        await (await admin.DeleteAsync(Path(RolesUrl, Unique.Name("missing")), null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");

        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(Path(RolesUrl, role), null)).StatusCode);
        Assert.DoesNotContain((await admin.GetJsonAsync(RolesUrl)).EnumerateArray(), r => r.GetProperty("name").GetString() == role);
        Assert.Empty((await admin.GetJsonAsync(Path(UsersUrl, user.Id))).GetProperty("roles").EnumerateArray());
        Assert.Equal(["role.deleted", "role.created"], (await AuditForAsync(admin, "role", role)).EnumerateArray().Select(e => e.GetProperty("action").GetString()));
    }

    /// <summary>Identity finds roles whatever the case, so the built-in role is protected whatever the case too.</summary>
    [SkippableTheory]
    [InlineData("admin")]
    [InlineData("ADMIN")]
    [InlineData("Admin")]
    public async Task The_admin_role_cannot_be_deleted_under_any_spelling(string spelling)
    {
        var admin = await AdminAsync(server);

        var response = await admin.DeleteAsync(Path(RolesUrl, spelling), null);

        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Contains((await admin.GetJsonAsync(RolesUrl)).EnumerateArray(), r => r.GetProperty("name").GetString() == "admin");
    }

    private static async Task<string> CreateRoleAsync(HttpClient admin)
    {
        var role = Unique.Name("role");
        var created = await admin.PostJsonAsync(RolesUrl, Json(new { name = role }));
        Assert.Equal($"/api/admin/roles/{role}", created.Headers.Location?.OriginalString);
        await created.ExpectAsync(HttpStatusCode.Created);
        return role;
    }

    /// <summary>Signs the user in through the login page with a public client; the token response plus the client's id.</summary>
    private async Task<JsonElement> SignInAsync(TestUser user)
    {
        var client = await server.CreatePublicClientAsync("openid offline_access");
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid offline_access");
        var json = System.Text.Json.Nodes.JsonNode.Parse(tokens.GetRawText())!.AsObject();
        json["client_id_for_test"] = client.ClientId;
        return JsonDocument.Parse(json.ToJsonString()).RootElement.Clone();
    }
}

public sealed class SqliteAdminUserApiTests(SqliteServerFixture server)
    : AdminUserApiTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminUserApiTests(PostgreSqlServerFixture server)
    : AdminUserApiTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
