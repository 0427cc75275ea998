using System.Net;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;
using static IdentityServer.Tests.Admin.AdminPages;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// The admin pages through a real browser session: a signed-in admin registers (guided by the kind of client),
/// edits and deletes clients with plain forms and antiforgery; everyone else is refused.
/// </summary>
public abstract class AdminPagesTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task An_anonymous_visitor_is_sent_to_the_login_page()
    {
        var page = await server.CreateBrowser().NavigateAsync(Url("/admin/clients"));

        Assert.Equal("/account/login", page.Uri.AbsolutePath);
        Assert.Contains("ReturnUrl=%2Fadmin%2Fclients", page.Uri.Query);
    }

    [SkippableFact]
    public async Task A_users_page_lists_their_sessions_and_ends_one_or_all()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var user = await server.CreateUserAsync();
        var first = server.CreateBrowser();
        await Accounts.AccountPages.SignInAsync(first, user.UserName, user.Password);
        var second = server.CreateBrowser();
        await Accounts.AccountPages.SignInAsync(second, user.UserName, user.Password);

        var page = await browser.NavigateAsync(Url($"/admin/users/{user.Id}"));
        Assert.Equal(2, page.Document.QuerySelectorAll("table.sessions tbody tr").Length);
        var ended = await browser.SubmitAsync(page, "table.sessions form");
        Assert.Contains("The session has ended.", ended.Document.QuerySelector(".notice")?.TextContent);
        Assert.Single(ended.Document.QuerySelectorAll("table.sessions tbody tr"));
        Assert.Equal("/account", (await Accounts.AccountPages.OpenAsync(first, "/account")).Uri.AbsolutePath);
        Assert.Equal("/account/login", (await Accounts.AccountPages.OpenAsync(second, "/account")).Uri.AbsolutePath);

        var all = await browser.SubmitAsync(ended, "#end-all-sessions");
        Assert.Contains("Every session of this user has ended", all.Document.QuerySelector(".notice")?.TextContent);
        Assert.Contains("Not signed in anywhere.", all.Body);
        Assert.Equal("/account/login", (await Accounts.AccountPages.OpenAsync(first, "/account")).Uri.AbsolutePath);
    }

    [SkippableFact]
    public async Task A_signed_in_user_without_the_admin_role_is_refused_every_admin_page_and_change()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync());
        var clientId = Unique.Name("refused");

        foreach (var path in new[] { "/admin", "/admin/clients", "/admin/clients/new?kind=machine", "/admin/users", "/admin/audit" })
        {
            var page = await browser.NavigateAsync(Url(path));
            Assert.Equal("/account/access-denied", page.Uri.AbsolutePath);
        }

        var post = await browser.PostFormAsync(Url("/admin/clients/new?kind=machine"), new Dictionary<string, string>
        {
            ["Form.ClientId"] = clientId,
            ["Form.GrantTypes"] = "client_credentials",
        });
        Assert.Equal("/account/access-denied", post.Uri.AbsolutePath);
        var admin = await AdminAsync(server);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    /// <summary>
    /// The web-app kind registers client_secret_post, the method ASP.NET Core's OpenIdConnect handler uses: a client
    /// must authenticate the way it is registered, so client_secret_basic would refuse such an app at the token endpoint.
    /// </summary>
    [SkippableFact]
    public async Task The_web_app_kind_registers_the_authentication_method_asp_net_cores_handler_uses()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));

        var form = await browser.NavigateAsync(Url("/admin/clients/new?kind=web"));

        Assert.Equal("client_secret_post", form.Document.QuerySelector("select[name='Form.TokenEndpointAuthMethod'] option[selected]")?.GetAttribute("value"));
    }

    [SkippableFact]
    public async Task An_admin_registers_a_machine_client_from_the_guided_form_and_sees_its_secret_once()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("machine");

        var kinds = await browser.NavigateAsync(Url("/admin/clients/new"));
        Assert.Equal(5, kinds.Document.QuerySelectorAll(".kinds a").Length);
        var form = await browser.NavigateAsync(Url("/admin/clients/new?kind=machine"));

        // The kind pre-fills what a machine client needs.
        Assert.Equal(["client_credentials"], form.Document.QuerySelectorAll("input[name='Form.GrantTypes'][checked]").Select(e => e.GetAttribute("value")));
        Assert.Equal("client_secret_basic", form.Document.QuerySelector("select[name='Form.TokenEndpointAuthMethod'] option[selected]")?.GetAttribute("value"));
        Assert.NotNull(form.Document.QuerySelector("form input[name=__RequestVerificationToken]"));

        var created = await browser.SubmitAsync(form, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [clientId],
            ["Form.ClientName"] = ["Invoice exporter"],
            ["Form.Scopes"] = [scope],
        });

        Assert.Equal(HttpStatusCode.OK, created.Status);
        var secret = created.Document.QuerySelector("#one-time-secret")?.GetAttribute("value");
        Assert.False(string.IsNullOrEmpty(secret), created.Body);
        Assert.Equal("no-store", created.Response.Headers.CacheControl?.ToString().Split(',')[0].Trim());
        Assert.NotNull(created.Document.QuerySelector("button[data-copy=one-time-secret][hidden]"));
        Assert.Empty(created.Document.QuerySelectorAll("script:not([src])"));
        Assert.Contains(created.Document.QuerySelectorAll("script[src]"), s => s.GetAttribute("src")!.StartsWith("/admin.js", StringComparison.Ordinal));
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, clientId, secret!, scope)));

        var edit = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));
        Assert.Equal(HttpStatusCode.OK, edit.Status);
        Assert.Contains("Invoice exporter", edit.Body);
        Assert.DoesNotContain(secret!, edit.Body);
    }

    [SkippableFact]
    public async Task A_bad_redirect_uri_is_shown_next_to_its_field_and_nothing_is_registered_until_it_is_fixed()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var clientId = Unique.Name("spa");
        var form = await browser.NavigateAsync(Url("/admin/clients/new?kind=spa"));
        Assert.Equal("none", form.Document.QuerySelector("select[name='Form.TokenEndpointAuthMethod'] option[selected]")?.GetAttribute("value"));

        var refused = await browser.SubmitAsync(form, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [clientId],
            ["Form.RedirectUris"] = ["https://spa.example.com/callback\nhttp://spa.example.com/callback"],
        });

        Assert.Equal(HttpStatusCode.OK, refused.Status);
        var errors = FieldErrors(refused);
        Assert.Contains(errors, e => e.StartsWith("redirect_uris[1]:", StringComparison.Ordinal) && e.Contains("https"));
        Assert.Equal("Form.RedirectUris", refused.Document.QuerySelector(".field-error")!.PreviousElementSibling?.PreviousElementSibling?.GetAttribute("name"));
        var admin = await AdminAsync(server);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);

        // The admin's input is kept; fixing the field registers the client (a public client: no secret to show).
        Assert.Equal(clientId, refused.Document.QuerySelector("input[name='Form.ClientId']")?.GetAttribute("value"));
        var registered = await browser.SubmitAsync(refused, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.RedirectUris"] = ["https://spa.example.com/callback"],
        });
        Assert.Equal($"/admin/clients/{clientId}", registered.Uri.AbsolutePath);
        Assert.Contains($"Client {clientId} registered.", registered.Document.QuerySelector(".notice")?.TextContent);
        var stored = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal(["https://spa.example.com/callback"], AdminClientApiTests<TFixture>.Strings(stored, "redirect_uris"));
        Assert.Equal(["authorization_code", "refresh_token"], AdminClientApiTests<TFixture>.Strings(stored, "grant_types"));
    }

    [SkippableFact]
    public async Task The_pkce_checkbox_lets_a_web_app_leave_pkce_out_and_a_spa_is_refused_it_next_to_the_field()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var webId = Unique.Name("legacy-web");
        var web = await browser.NavigateAsync(Url("/admin/clients/new?kind=web"));
        Assert.Null(web.Document.QuerySelector("input[name='Form.PkceOptional'][checked]"));

        var created = await browser.SubmitAsync(web, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [webId],
            ["Form.RedirectUris"] = ["https://legacy.example.com/signin-oidc"],
            ["Form.PkceOptional"] = ["true"],
        });

        Assert.Equal(HttpStatusCode.OK, created.Status);
        Assert.Equal(System.Text.Json.JsonValueKind.False, (await admin.GetJsonAsync(Path(ClientsUrl, webId))).GetProperty("require_pkce").ValueKind);
        var edit = await browser.NavigateAsync(Url($"/admin/clients/{webId}"));
        Assert.NotNull(edit.Document.QuerySelector("input[name='Form.PkceOptional'][checked]"));

        var spaId = Unique.Name("spa");
        var refused = await browser.SubmitAsync(await browser.NavigateAsync(Url("/admin/clients/new?kind=spa")), "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [spaId],
            ["Form.RedirectUris"] = ["https://spa.example.com/callback"],
            ["Form.PkceOptional"] = ["true"],
        });
        Assert.Contains(FieldErrors(refused), e => e.Contains("must use PKCE", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, spaId))).StatusCode);
    }

    [SkippableFact]
    public async Task Audience_aliases_are_entered_one_per_line_and_shown_again_on_the_clients_page()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var apiId = Unique.Name("orders-api");

        var created = await browser.SubmitAsync(await browser.NavigateAsync(Url("/admin/clients/new?kind=machine")), "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [apiId],
            ["Form.AudienceAliases"] = ["https://orders.example.com\nhttps://orders.example.com/v2\n"],
        });

        Assert.Equal(HttpStatusCode.OK, created.Status);
        Assert.Equal(["https://orders.example.com", "https://orders.example.com/v2"],
            AdminClientApiTests<TFixture>.Strings(await admin.GetJsonAsync(Path(ClientsUrl, apiId)), "audience_aliases"));
        var edit = await browser.NavigateAsync(Url($"/admin/clients/{apiId}"));
        Assert.Equal("https://orders.example.com\nhttps://orders.example.com/v2", edit.Document.QuerySelector("textarea[name='Form.AudienceAliases']")?.TextContent);
    }

    [SkippableFact]
    public async Task Requiring_DPoP_is_a_checkbox_shown_checked_again_on_the_clients_page()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("dpop-machine");

        var created = await browser.SubmitAsync(await browser.NavigateAsync(Url("/admin/clients/new?kind=machine")), "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [clientId],
            ["Form.DpopBoundAccessTokens"] = ["true"],
        });

        Assert.Equal(HttpStatusCode.OK, created.Status);
        Assert.True((await admin.GetJsonAsync(Path(ClientsUrl, clientId))).GetProperty("dpop_bound_access_tokens").GetBoolean());
        var edit = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));
        Assert.NotNull(edit.Document.QuerySelector("input[name='Form.DpopBoundAccessTokens'][checked]"));
    }

    [SkippableFact]
    public async Task Requiring_signed_requests_is_a_checkbox_for_a_client_with_keys_shown_checked_again_on_the_clients_page()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("jar-web");
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var publicKey = key.ExportParameters(false);
        var jwks = System.Text.Json.JsonSerializer.Serialize(new { keys = new[] { new { kty = "RSA",
            n = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(publicKey.Modulus), e = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(publicKey.Exponent) } } });

        var created = await browser.SubmitAsync(await browser.NavigateAsync(Url("/admin/clients/new?kind=web")), "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [clientId],
            ["Form.RedirectUris"] = ["https://app.test/callback"],
            ["Form.TokenEndpointAuthMethod"] = ["private_key_jwt"],
            ["Form.Jwks"] = [jwks],
            ["Form.RequireSignedRequestObject"] = ["true"],
        });

        Assert.True(created.Status == HttpStatusCode.OK, created.Body);
        Assert.True((await admin.GetJsonAsync(Path(ClientsUrl, clientId))).GetProperty("require_signed_request_object").GetBoolean());
        var edit = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));
        Assert.NotNull(edit.Document.QuerySelector("input[name='Form.RequireSignedRequestObject'][checked]"));
    }

    [SkippableFact]
    public async Task A_front_channel_logout_uri_is_entered_on_the_form_and_shown_again_on_the_clients_page()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("front-web");

        var created = await browser.SubmitAsync(await browser.NavigateAsync(Url("/admin/clients/new?kind=web")), "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [clientId],
            ["Form.RedirectUris"] = ["https://web.example.com/signin-oidc"],
            ["Form.FrontChannelLogoutUri"] = ["https://web.example.com/signout-oidc"],
            ["Form.FrontChannelLogoutSessionRequired"] = ["true"],
        });

        Assert.Equal(HttpStatusCode.OK, created.Status);
        var document = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal("https://web.example.com/signout-oidc", document.GetProperty("frontchannel_logout_uri").GetString());
        Assert.True(document.GetProperty("frontchannel_logout_session_required").GetBoolean());
        var edit = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));
        Assert.Equal("https://web.example.com/signout-oidc", edit.Document.QuerySelector("input[name='Form.FrontChannelLogoutUri']")?.GetAttribute("value"));
        Assert.NotNull(edit.Document.QuerySelector("input[name='Form.FrontChannelLogoutSessionRequired'][checked]"));
    }

    [SkippableFact]
    public async Task An_admin_edits_a_client_and_a_form_opened_before_another_change_does_not_overwrite_it_unseen()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("edited");
        await (await admin.PostJsonAsync(ClientsUrl, Json(AdminClientApiTests<TFixture>.Spa(clientId, "https://one.example.com/cb"))))
            .ExpectAsync(HttpStatusCode.Created);
        var first = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));
        var second = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));

        var saved = await browser.SubmitAsync(first, "form.wide-form", new Dictionary<string, string[]> { ["Form.ClientName"] = ["First edit"] });
        Assert.Contains("Changes saved.", saved.Document.QuerySelector(".notice")?.TextContent);

        var stale = await browser.SubmitAsync(second, "form.wide-form", new Dictionary<string, string[]> { ["Form.ClientName"] = ["Second edit"] });
        Assert.Equal(HttpStatusCode.OK, stale.Status);
        Assert.Contains("Someone else changed this client", stale.Document.QuerySelector(".error")?.TextContent);
        Assert.Equal("First edit", (await admin.GetJsonAsync(Path(ClientsUrl, clientId))).GetProperty("client_name").GetString());

        // The refused edit is still in the form; saving it again, knowingly, applies it.
        Assert.Equal("Second edit", stale.Document.QuerySelector("input[name='Form.ClientName']")?.GetAttribute("value"));
        var again = await browser.SubmitAsync(stale, "form.wide-form");
        Assert.Contains("Changes saved.", again.Document.QuerySelector(".notice")?.TextContent);
        Assert.Equal("Second edit", (await admin.GetJsonAsync(Path(ClientsUrl, clientId))).GetProperty("client_name").GetString());
        Assert.Equal(["client.updated", "client.updated", "client.created"],
            (await AuditForAsync(admin, "client", clientId)).EnumerateArray().Select(e => e.GetProperty("action").GetString()));
    }

    [SkippableFact]
    public async Task An_admin_deletes_a_client_after_confirming()
    {
        var user = await server.CreateUserAsync(null, "admin");
        var browser = await SignedInAsync(server, user);
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("doomed");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" } })))
            .ExpectAsync(HttpStatusCode.Created);

        var confirm = await browser.NavigateAsync(Url($"/admin/clients/{clientId}/delete"));
        Assert.Equal(HttpStatusCode.OK, confirm.Status);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
        var deleted = await browser.SubmitAsync(confirm, "form");

        Assert.Equal("/admin/clients", deleted.Uri.AbsolutePath);
        Assert.Contains($"Client {clientId} deleted.", deleted.Document.QuerySelector(".notice")?.TextContent);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
        var audit = (await AuditForAsync(admin, "client", clientId)).EnumerateArray().First();
        Assert.Equal("client.deleted", audit.GetProperty("action").GetString());
        Assert.Equal("user", audit.GetProperty("actor_type").GetString());
        Assert.Equal(user.Id, audit.GetProperty("actor_id").GetString());
        Assert.Equal(user.UserName, audit.GetProperty("actor_name").GetString());
    }

    [SkippableFact]
    public async Task A_form_posted_without_its_antiforgery_token_changes_nothing()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("forged");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" } })))
            .ExpectAsync(HttpStatusCode.Created);
        var confirm = await browser.NavigateAsync(Url($"/admin/clients/{clientId}/delete"));
        var fields = Fields((AngleSharp.Html.Dom.IHtmlFormElement)confirm.Document.QuerySelector("form")!);
        fields.RemoveAll(f => f.Key == "__RequestVerificationToken");

        var forged = await browser.PostFormAsync(Url($"/admin/clients/{clientId}/delete"), fields);
        var created = await browser.PostFormAsync(Url("/admin/clients/new?kind=machine"), new Dictionary<string, string>
        {
            ["Form.ClientId"] = Unique.Name("forged"),
            ["Form.GrantTypes"] = "client_credentials",
        });

        Assert.Equal(HttpStatusCode.BadRequest, forged.Status);
        Assert.Equal(HttpStatusCode.BadRequest, created.Status);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    [SkippableFact]
    public async Task Rotating_a_secret_on_its_page_shows_the_new_one_once()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("rotated");
        var old = (await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, scope })))
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("client_secret").GetString()!;

        var edit = await browser.NavigateAsync(Url($"/admin/clients/{clientId}"));
        Assert.NotNull(edit.Document.QuerySelector($"a[href='/admin/clients/{clientId}/secret']"));
        var confirm = await browser.NavigateAsync(Url($"/admin/clients/{clientId}/secret"));
        var rotated = await browser.SubmitAsync(confirm, "form");

        var secret = rotated.Document.QuerySelector("#one-time-secret")?.GetAttribute("value");
        Assert.False(string.IsNullOrEmpty(secret), rotated.Body);
        Assert.Equal(HttpStatusCode.Unauthorized, (await ClientCredentialsAsync(server, clientId, old, scope)).StatusCode);
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, clientId, secret!, scope)));
    }

    [SkippableFact]
    public async Task A_list_page_past_the_end_shows_no_entries_however_large_its_number()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var client = await server.CreateConfidentialClientAsync();
        var scope = await server.CreateScopeAsync();
        var user = await server.CreateUserAsync();

        foreach (var (list, search, link) in new[]
                 {
                     ("clients", client.ClientId, $"/admin/clients/{client.ClientId}"),
                     ("scopes", scope, $"/admin/scopes/{scope}"),
                     ("users", user.UserName, $"/admin/users/{user.Id}"),
                 })
        {
            var first = await browser.NavigateAsync(Url($"/admin/{list}?search={search}&p=1"));
            Assert.NotNull(first.Document.QuerySelector($"a[href='{link}']"));
            var far = await browser.NavigateAsync(Url($"/admin/{list}?search={search}&p={int.MaxValue}"));
            Assert.True(far.Status == HttpStatusCode.OK, $"{list}: {(int)far.Status}");
            Assert.Null(far.Document.QuerySelector($"a[href='{link}']"));
        }
    }

    [SkippableFact]
    public async Task A_client_key_that_cannot_verify_is_shown_next_to_the_keys_field()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var clientId = Unique.Name("signed");
        var form = await browser.NavigateAsync(Url("/admin/clients/new?kind=machine"));

        var refused = await browser.SubmitAsync(form, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.ClientId"] = [clientId],
            ["Form.TokenEndpointAuthMethod"] = ["private_key_jwt"],
            ["Form.Jwks"] = ["""{"keys":[{"kty":"RSA","n":"abc","e":"AQAB"}]}"""],
        });

        Assert.Equal(HttpStatusCode.OK, refused.Status);
        Assert.Contains(FieldErrors(refused), e => e.StartsWith("jwks.keys[0]:", StringComparison.Ordinal) && e.Contains("2048"));
        Assert.Equal("Form.Jwks", refused.Document.QuerySelector(".field-error")!.PreviousElementSibling?.PreviousElementSibling?.GetAttribute("name"));
        Assert.Equal(HttpStatusCode.NotFound, (await (await AdminAsync(server)).GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    [SkippableFact]
    public async Task Scopes_users_and_roles_are_managed_from_their_pages_and_show_in_the_audit_log()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var admin = await AdminAsync(server);
        var scopeName = Unique.Name("orders");
        var roleName = Unique.Name("clerk");
        var userName = Unique.Name("dana");

        var scopeForm = await browser.NavigateAsync(Url("/admin/scopes/new"));
        var badScope = await browser.SubmitAsync(scopeForm, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.Name"] = [scopeName],
            ["Form.Resources"] = ["not a uri"],
        });
        Assert.Contains(FieldErrors(badScope), e => e.StartsWith("resources[0]:", StringComparison.Ordinal));
        var scopes = await browser.SubmitAsync(badScope, "form.wide-form", new Dictionary<string, string[]> { ["Form.Resources"] = ["https://orders.example.com"] });
        Assert.Contains($"Scope {scopeName} created.", scopes.Document.QuerySelector(".notice")?.TextContent);
        Assert.Equal(["https://orders.example.com"], AdminClientApiTests<TFixture>.Strings(await admin.GetJsonAsync(Path(ScopesUrl, scopeName)), "resources"));

        var roles = await browser.NavigateAsync(Url("/admin/roles"));
        roles = await browser.SubmitAsync(roles, "form.wide-form", new Dictionary<string, string[]> { ["NewRole"] = [roleName] });
        Assert.Contains($"Role {roleName} created.", roles.Document.QuerySelector(".notice")?.TextContent);
        var noName = await browser.SubmitAsync(roles, "form.inline", new Dictionary<string, string[]> { ["name"] = [" "] });
        Assert.True(noName.Status == HttpStatusCode.OK, $"{(int)noName.Status}: {noName.Body}");
        Assert.Contains("There is no role", noName.Body);

        var userForm = await browser.NavigateAsync(Url("/admin/users/new"));
        var weak = await browser.SubmitAsync(userForm, "form.wide-form", new Dictionary<string, string[]>
        {
            ["Form.UserName"] = [userName],
            ["Form.Email"] = [$"{userName}@example.test"],
            ["Form.Roles"] = [roleName],
            ["Form.Password"] = ["short"],
        });
        Assert.NotEmpty(FieldErrors(weak));
        var created = await browser.SubmitAsync(weak, "form.wide-form", new Dictionary<string, string[]> { ["Form.Password"] = ["a long enough password"] });
        Assert.Contains($"User {userName} created.", created.Document.QuerySelector(".notice")?.TextContent);
        var userId = created.Uri.AbsolutePath.Split('/')[^1];
        var user = await admin.GetJsonAsync(Path(UsersUrl, userId));
        Assert.Equal([roleName], AdminClientApiTests<TFixture>.Strings(user, "roles"));
        Assert.True(user.GetProperty("has_password").GetBoolean());

        var password = await browser.NavigateAsync(Url($"/admin/users/{userId}/password"));
        var reset = await browser.SubmitAsync(password, "form.wide-form", new Dictionary<string, string[]> { ["Password"] = ["another long password"] });
        Assert.Contains("Password set.", reset.Document.QuerySelector(".notice")?.TextContent);

        var audit = await browser.NavigateAsync(Url("/admin/audit"));
        Assert.Contains("scope.created", audit.Body);
        Assert.Contains("role.created", audit.Body);
        Assert.Contains("user.password_reset", audit.Body);
        Assert.DoesNotContain("another long password", audit.Body);
        Assert.DoesNotContain("a long enough password", audit.Body);

        foreach (var path in new[] { "/admin", "/admin/clients", "/admin/scopes", $"/admin/scopes/{scopeName}", $"/admin/scopes/{scopeName}/delete",
                     "/admin/scopes/admin", "/admin/users", $"/admin/users/{userId}", $"/admin/users/{userId}/delete", "/admin/clients/new?kind=device",
                     "/admin/clients/new?kind=native", "/admin/clients/new?kind=web", $"/admin/users?search={userName}", "/admin/audit?type=user" })
        {
            var page = await browser.NavigateAsync(Url(path));
            Assert.True(page.Status == HttpStatusCode.OK, $"{path}: {(int)page.Status}");
        }

        var deleteScope = await browser.SubmitAsync(await browser.NavigateAsync(Url($"/admin/scopes/{scopeName}/delete")), "form");
        Assert.Contains($"Scope {scopeName} deleted.", deleteScope.Document.QuerySelector(".notice")?.TextContent);
        var deleteUser = await browser.SubmitAsync(await browser.NavigateAsync(Url($"/admin/users/{userId}/delete")), "form");
        Assert.Contains($"User {userName} deleted.", deleteUser.Document.QuerySelector(".notice")?.TextContent);
        Assert.Equal(HttpStatusCode.NotFound, (await browser.NavigateAsync(Url($"/admin/users/{userId}"))).Status);
    }
}

public sealed class SqliteAdminPagesTests(SqliteServerFixture server)
    : AdminPagesTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminPagesTests(PostgreSqlServerFixture server)
    : AdminPagesTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
