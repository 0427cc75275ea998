using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using IdentityServer.Tests.Authorization;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// Dynamic client registration (RFC 7591) and its management (RFC 7592), on a server that enables it: a client registers
/// itself (as an MCP client or a desktop tool does), gets a server-chosen client_id and, if confidential, a secret, signs
/// people in with their explicit consent, reads its registration and deletes it with its registration access token.
/// Only the grants and scopes the settings allow may be registered.
/// </summary>
public abstract class RegistrationTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string LoopbackRedirect = "http://127.0.0.1:33418/callback";

    [SkippableFact]
    public async Task A_public_client_registers_itself_and_signs_a_person_in_after_their_consent()
    {
        var response = await RegisterAsync(new
        {
            client_name = "Desktop tool", redirect_uris = new[] { LoopbackRedirect }, grant_types = new[] { "authorization_code", "refresh_token" },
            response_types = new[] { "code" }, token_endpoint_auth_method = "none", scope = "openid offline_access",
            logo_uri = "https://tool.example.com/logo.png", software_id = "desktop-tool", contacts = new[] { "ops@example.com" }, // ignored
        });

        var registered = await response.ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("no-store", response.Headers.CacheControl?.ToString());
        var clientId = registered.GetProperty("client_id").GetString()!;
        Assert.StartsWith("dcr-", clientId);
        Assert.False(registered.TryGetProperty("client_secret", out _));
        Assert.Equal("none", registered.GetProperty("token_endpoint_auth_method").GetString());
        Assert.Equal("explicit", registered.GetProperty("consent_type").GetString());
        Assert.Equal("openid offline_access", registered.GetProperty("scope").GetString());
        Assert.Equal(["code"], Jwt.Strings(registered.GetProperty("response_types")));
        Assert.True(registered.GetProperty("client_id_issued_at").GetInt64() > 0);
        Assert.Equal(await server.EndpointAsync("registration_endpoint") + "/" + clientId, registered.GetProperty("registration_client_uri").GetString());

        // The person is asked: a self-registered app never gets in without consent.
        var pkce = Pkce.Create();
        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid offline_access", pkce, LoopbackRedirect), IsLoopbackApp);
        page = await OAuth.SignInAsync(browser, page, await server.CreateUserAsync(), IsLoopbackApp);
        Assert.NotNull(page.Document.QuerySelector("button[value=accept]"));
        page = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: IsLoopbackApp);
        var code = OAuth.QueryOf(page.RedirectTarget!)["code"];
        var tokens = await OAuth.RedeemAsync(server, new TestClient(clientId, null, new()), code, pkce, LoopbackRedirect);
        Assert.True(tokens.TryGetProperty("refresh_token", out _));
    }

    /// <summary>RFC 7591's defaults: the code grant and client_secret_basic, so a secret, shown once; the allowed scopes.</summary>
    [SkippableFact]
    public async Task A_client_registering_with_redirect_uris_only_is_confidential_and_its_secret_authenticates_it()
    {
        var registered = await (await RegisterAsync(new { redirect_uris = new[] { "https://app.test/callback" } })).ExpectAsync(HttpStatusCode.Created);

        Assert.Equal("client_secret_basic", registered.GetProperty("token_endpoint_auth_method").GetString());
        Assert.Equal(["authorization_code"], Jwt.Strings(registered.GetProperty("grant_types")));
        Assert.Equal("openid profile email", registered.GetProperty("scope").GetString()); // offline_access only with the refresh grant
        Assert.Equal(0, registered.GetProperty("client_secret_expires_at").GetInt64());
        var client = new TestClient(registered.GetProperty("client_id").GetString()!, registered.GetProperty("client_secret").GetString()!, new());
        var introspection = await OAuth.PostFormAsync(server, "introspection_endpoint", new Dictionary<string, string> { ["token"] = "not-a-token" }, client);
        Assert.Equal(HttpStatusCode.OK, introspection.StatusCode);
    }

    /// <summary>A private_key_jwt client registers its keys and that it signs every authorization request (RFC 9101 10.5).</summary>
    [SkippableFact]
    public async Task A_client_with_keys_registers_that_its_requests_must_be_signed()
    {
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var publicKey = key.ExportParameters(false);
        var registered = await (await RegisterAsync(new
        {
            redirect_uris = new[] { "https://app.test/callback" }, token_endpoint_auth_method = "private_key_jwt",
            jwks = new { keys = new[] { new { kty = "RSA", n = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(publicKey.Modulus),
                e = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(publicKey.Exponent) } } },
            require_signed_request_object = true,
        })).ExpectAsync(HttpStatusCode.Created);

        Assert.True(registered.GetProperty("require_signed_request_object").GetBoolean(), registered.ToString());
        var unsigned = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, registered.GetProperty("client_id").GetString()!,
            "openid", Pkce.Create()), OAuth.IsApp);
        Assert.Contains("request object", unsigned.Body);
    }

    [SkippableTheory]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"grant_types":["client_credentials"]}""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"scope":"openid admin"}""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"response_types":["token"]}""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"jwks_uri":"https://app.test/jwks"}""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["http://app.example.com/callback"]}""", "invalid_redirect_uri")]
    [InlineData("""{"grant_types":["authorization_code"]}""", "invalid_redirect_uri")]
    [InlineData("""{"redirect_uris":["https://user:pw@app.test/callback"]}""", "invalid_redirect_uri")]
    // A name people read on the consent page: none that reads other than it is.
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"client_name":"Your bank \u202Eppa"}""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"client_name":"Your bank\u0000"}""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"post_logout_redirect_uris":["https://app.test@evil.test/out"]}""", "invalid_redirect_uri")]
    [InlineData("""{"redirect_uris":"https://app.test/callback"}""", "invalid_client_metadata")]
    [InlineData("""not json""", "invalid_client_metadata")]
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"redirect_uris":["https://evil.test/callback"]}""", "invalid_client_metadata")]
    // The server would post to it: not from anyone who cares to register.
    [InlineData("""{"redirect_uris":["https://app.test/callback"],"backchannel_logout_uri":"https://169.254.169.254/latest"}""", "invalid_client_metadata")]
    public async Task A_registration_asking_for_what_is_not_allowed_is_refused(string body, string error)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");

        var response = await server.CreateClient().PostAsync(await server.EndpointAsync("registration_endpoint"), content);

        var json = await response.ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal(error, json.GetProperty("error").GetString());
        Assert.False(string.IsNullOrEmpty(json.GetProperty("error_description").GetString()));
    }

    [SkippableFact]
    public async Task A_client_reads_its_registration_and_deletes_it_with_its_registration_access_token_only()
    {
        var registered = await (await RegisterAsync(new { redirect_uris = new[] { "https://app.test/callback" } })).ExpectAsync(HttpStatusCode.Created);
        var other = await (await RegisterAsync(new { redirect_uris = new[] { "https://app.test/callback" } })).ExpectAsync(HttpStatusCode.Created);
        var uri = registered.GetProperty("registration_client_uri").GetString()!;
        var token = registered.GetProperty("registration_access_token").GetString()!;

        var read = await (await ManageAsync(HttpMethod.Get, uri, token)).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(registered.GetProperty("client_id").GetString(), read.GetProperty("client_id").GetString());
        Assert.Equal(token, read.GetProperty("registration_access_token").GetString()); // RFC 7592 section 3
        foreach (var method in new[] { HttpMethod.Patch, HttpMethod.Options, HttpMethod.Trace, new HttpMethod("PROPFIND") })
        {
            var notAllowed = await ManageAsync(method, uri, token);
            Assert.Equal("invalid_request", (await notAllowed.ExpectAsync(HttpStatusCode.MethodNotAllowed)).GetProperty("error").GetString());
            Assert.Equal(["GET", "PUT", "DELETE"], notAllowed.Content.Headers.Allow);
        }

        Assert.False(read.TryGetProperty("client_secret", out _));

        foreach (var wrong in new[] { null, "not-the-token", other.GetProperty("registration_access_token").GetString() })
        {
            var refused = await ManageAsync(HttpMethod.Get, uri, wrong);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await ManageAsync(HttpMethod.Delete, uri, wrong)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.NoContent, (await ManageAsync(HttpMethod.Delete, uri, token)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await ManageAsync(HttpMethod.Get, uri, token)).StatusCode);
        var client = new TestClient(registered.GetProperty("client_id").GetString()!, registered.GetProperty("client_secret").GetString()!, new());
        var introspection = await OAuth.PostFormAsync(server, "introspection_endpoint", new Dictionary<string, string> { ["token"] = "x" }, client);
        Assert.Equal(HttpStatusCode.Unauthorized, introspection.StatusCode);
    }

    /// <summary>
    /// RFC 7592 section 2.2: the client replaces its metadata with its registration access token, naming itself, under
    /// the registration's limits; it keeps its secret, which it may send only right.
    /// </summary>
    [SkippableFact]
    public async Task A_client_updates_its_registration_under_the_same_limits_and_keeps_its_secret()
    {
        var registered = await (await RegisterAsync(new { redirect_uris = new[] { "https://app.test/callback" }, client_name = "Before" }))
            .ExpectAsync(HttpStatusCode.Created);
        var clientId = registered.GetProperty("client_id").GetString()!;
        var secret = registered.GetProperty("client_secret").GetString()!;
        var uri = registered.GetProperty("registration_client_uri").GetString()!;
        var token = registered.GetProperty("registration_access_token").GetString()!;

        var updated = await (await ManageAsync(HttpMethod.Put, uri, token, new
        {
            client_id = clientId, client_secret = secret, client_name = "After", redirect_uris = new[] { "https://app.test/other" }, scope = "openid",
        })).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal("After", updated.GetProperty("client_name").GetString());
        Assert.Equal(["https://app.test/other"], Jwt.Strings(updated.GetProperty("redirect_uris")));
        Assert.Equal("openid", updated.GetProperty("scope").GetString());
        Assert.Equal("explicit", updated.GetProperty("consent_type").GetString());
        Assert.Equal(token, updated.GetProperty("registration_access_token").GetString());
        Assert.False(updated.TryGetProperty("client_secret", out _));
        var introspection = await OAuth.PostFormAsync(server, "introspection_endpoint", new Dictionary<string, string> { ["token"] = "x" },
            new TestClient(clientId, secret, new()));
        Assert.Equal(HttpStatusCode.OK, introspection.StatusCode);

        foreach (var refused in new object[]
        {
            new { redirect_uris = new[] { "https://app.test/callback" } }, // no client_id
            new { client_id = "another", redirect_uris = new[] { "https://app.test/callback" } },
            new { client_id = clientId, client_secret = "not-the-secret", redirect_uris = new[] { "https://app.test/callback" } },
            new { client_id = clientId, client_secret = "", redirect_uris = new[] { "https://app.test/callback" } },
            new { client_id = clientId, redirect_uris = new[] { "https://app.test/callback" }, grant_types = new[] { "client_credentials" } },
        })
        {
            var response = await ManageAsync(HttpMethod.Put, uri, token, refused);
            Assert.Equal("invalid_client_metadata", (await response.ExpectAsync(HttpStatusCode.BadRequest)).GetProperty("error").GetString());
        }

        Assert.Equal(HttpStatusCode.Unauthorized, (await ManageAsync(HttpMethod.Put, uri, "not-the-token", new { client_id = clientId })).StatusCode);
    }

    /// <summary>
    /// A person consented to the app as it was: once it changes its redirect URI (or its name) through an update, they
    /// are asked again, on a page that names the new address, rather than their consent sending a code there unseen.
    /// </summary>
    [SkippableFact]
    public async Task A_client_that_changes_its_redirect_uri_is_consented_to_again()
    {
        var registered = await (await RegisterAsync(new
        {
            redirect_uris = new[] { "https://app.test/callback" }, token_endpoint_auth_method = "none", scope = "openid",
        })).ExpectAsync(HttpStatusCode.Created);
        var clientId = registered.GetProperty("client_id").GetString()!;
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid", Pkce.Create()), OAuth.IsApp);
        page = await OAuth.SignInAsync(browser, page, user);
        page = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: OAuth.IsApp);
        Assert.Contains("code=", page.RedirectTarget!.Query);

        await (await ManageAsync(HttpMethod.Put, registered.GetProperty("registration_client_uri").GetString()!,
            registered.GetProperty("registration_access_token").GetString(), new
            {
                client_id = clientId, redirect_uris = new[] { "https://evil.test/cb" }, token_endpoint_auth_method = "none", scope = "openid",
            })).ExpectAsync(HttpStatusCode.OK);

        var again = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid", Pkce.Create(), "https://evil.test/cb"),
            uri => uri.Host == "evil.test");
        Assert.Null(again.RedirectTarget);
        Assert.Contains("evil.test", again.Document.QuerySelector("p.notice")?.TextContent);
    }

    /// <summary>
    /// What an administrator gave a registered client beyond the registration's limits survives the client sending its
    /// registration back unchanged (RFC 7592 section 2.2's read, change, send): an alias or a token lifetime it cannot set,
    /// a back-channel logout URI an open registration could not have registered.
    /// </summary>
    [SkippableFact]
    public async Task An_update_keeps_what_an_administrator_added()
    {
        var registered = await (await RegisterAsync(new { redirect_uris = new[] { "https://app.test/callback" } })).ExpectAsync(HttpStatusCode.Created);
        var clientId = registered.GetProperty("client_id").GetString()!;
        var uri = registered.GetProperty("registration_client_uri").GetString()!;
        var token = registered.GetProperty("registration_access_token").GetString()!;
        var admin = await AdminAsync(server);
        var document = JsonSerializer.Deserialize<Dictionary<string, object?>>((await admin.GetJsonAsync(Path(ClientsUrl, clientId))).GetRawText())!;
        document["audience_aliases"] = new[] { "https://api.app.test/" };
        document["backchannel_logout_uri"] = "https://app.test/backchannel";
        document["access_token_lifetime"] = 300;
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(document))).ExpectAsync(HttpStatusCode.OK);

        var read = await (await ManageAsync(HttpMethod.Get, uri, token)).ExpectAsync(HttpStatusCode.OK);
        var sentBack = JsonSerializer.Deserialize<Dictionary<string, object?>>(read.GetRawText())!;
        sentBack.Remove("audience_aliases"); // a registrant cannot send it: it is kept anyway
        await (await ManageAsync(HttpMethod.Put, uri, token, sentBack)).ExpectAsync(HttpStatusCode.OK);

        var stored = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal(["https://api.app.test/"], Jwt.Strings(stored.GetProperty("audience_aliases")));
        Assert.Equal("https://app.test/backchannel", stored.GetProperty("backchannel_logout_uri").GetString());
        Assert.Equal(300, stored.GetProperty("access_token_lifetime").GetInt32());
    }

    [SkippableFact]
    public async Task Discovery_names_the_registration_endpoint()
    {
        var discovery = await server.CreateClient().GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");

        Assert.EndsWith("/connect/register", discovery.GetProperty("registration_endpoint").GetString());
    }

    /// <summary>With <c>Registration:RequireInitialAccessToken</c>, only a caller the admin API would take registers.</summary>
    [SkippableFact]
    public async Task With_initial_access_tokens_required_only_an_admin_token_registers()
    {
        await using var factory = server.StartServer(new Dictionary<string, string?> { ["Registration:RequireInitialAccessToken"] = "true" });
        var guarded = new AttachedServer(factory, server.Provider);
        var body = Json(new { redirect_uris = new[] { "https://app.test/callback" } });

        // Refused with the endpoint's JSON errors (RFC 7591 section 3, RFC 6750 section 3.1), not an empty body.
        var anonymous = await guarded.CreateClient().PostJsonAsync(await guarded.EndpointAsync("registration_endpoint"), body);
        Assert.Equal("invalid_token", (await anonymous.ExpectAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString());
        Assert.Equal("Bearer", anonymous.Headers.WwwAuthenticate.Single().Scheme);
        var notAdmin = await WithBearer(guarded, await MachineTokenAsync(guarded, await guarded.CreateScopeAsync(TestApi.NewAudience())))
            .PostJsonAsync(await guarded.EndpointAsync("registration_endpoint"), body);
        var insufficient = await notAdmin.ExpectAsync(HttpStatusCode.Forbidden);
        Assert.Equal("insufficient_scope", insufficient.GetProperty("error").GetString());
        Assert.False(string.IsNullOrEmpty(insufficient.GetProperty("error_description").GetString()));
        Assert.Contains("insufficient_scope", notAdmin.Headers.WwwAuthenticate.Single().ToString());

        var admin = await AdminAsync(guarded);
        var registered = await (await admin.PostJsonAsync(await guarded.EndpointAsync("registration_endpoint"), body)).ExpectAsync(HttpStatusCode.Created);
        Assert.StartsWith("dcr-", registered.GetProperty("client_id").GetString());

        // An admin's session cookie is no initial access token (and the endpoint has no antiforgery check for one).
        var adminBrowser = await IdentityServer.Tests.Admin.AdminPages.SignedInAsync(guarded, await guarded.CreateUserAsync(null, "admin"));
        using var request = new HttpRequestMessage(HttpMethod.Post, await guarded.EndpointAsync("registration_endpoint"))
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        var byCookie = await adminBrowser.SendAsync(request);
        Assert.True(byCookie.StatusCode == HttpStatusCode.Unauthorized, $"{(int)byCookie.StatusCode}: {await byCookie.Content.ReadAsStringAsync()}");
    }

    /// <summary>
    /// Only a request with an initial (admin) access token names addresses this server fetches or posts to: an update
    /// with the registration access token alone may send the stored jwks_uri and backchannel_logout_uri back unchanged
    /// (RFC 7592's PUT carries the whole document), not change them or add them, also where registrations need an
    /// initial access token.
    /// </summary>
    [SkippableFact]
    public async Task With_initial_access_tokens_required_an_update_may_repeat_but_not_change_or_add_a_jwks_uri_or_backchannel_logout_uri()
    {
        await using var factory = server.StartServer(new Dictionary<string, string?> { ["Registration:RequireInitialAccessToken"] = "true" });
        var guarded = new AttachedServer(factory, server.Provider);
        var admin = await AdminAsync(guarded);
        var endpoint = await guarded.EndpointAsync("registration_endpoint");
        var withAddresses = new Dictionary<string, object>
        {
            ["redirect_uris"] = new[] { "https://app.test/callback" }, ["token_endpoint_auth_method"] = "private_key_jwt",
            ["jwks_uri"] = "https://app.test/jwks", ["backchannel_logout_uri"] = "https://app.test/backchannel",
        };
        var registered = await (await admin.PostJsonAsync(endpoint, Json(withAddresses))).ExpectAsync(HttpStatusCode.Created);
        var plain = await (await admin.PostJsonAsync(endpoint, Json(new { redirect_uris = new[] { "https://app.test/callback" } })))
            .ExpectAsync(HttpStatusCode.Created);

        Dictionary<string, object> Update(JsonElement client, Action<Dictionary<string, object>> change)
        {
            var body = new Dictionary<string, object>(withAddresses) { ["client_id"] = client.GetProperty("client_id").GetString()! };
            change(body);
            return body;
        }

        Task<HttpResponseMessage> PutAsync(JsonElement client, Dictionary<string, object> body) => ManageAsync(HttpMethod.Put,
            client.GetProperty("registration_client_uri").GetString()!, client.GetProperty("registration_access_token").GetString(), body, guarded);

        var repeated = await (await PutAsync(registered, Update(registered, _ => { }))).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("https://app.test/jwks", repeated.GetProperty("jwks_uri").GetString());
        Assert.Equal("https://app.test/backchannel", repeated.GetProperty("backchannel_logout_uri").GetString());

        foreach (var (client, body, field) in new[]
        {
            (registered, Update(registered, b => b["jwks_uri"] = "https://169.254.169.254/jwks"), "jwks_uri"),
            (registered, Update(registered, b => b["backchannel_logout_uri"] = "https://169.254.169.254/latest"), "backchannel_logout_uri"),
            // Added: the plain client given keys at an address, or a back-channel logout URI (it is confidential already).
            (plain, Update(plain, b => b.Remove("backchannel_logout_uri")), "jwks_uri"),
            (plain, Update(plain, b =>
            {
                b["token_endpoint_auth_method"] = "client_secret_basic";
                b.Remove("jwks_uri");
            }), "backchannel_logout_uri"),
        })
        {
            var refused = await (await PutAsync(client, body)).ExpectAsync(HttpStatusCode.BadRequest);
            Assert.Equal("invalid_client_metadata", refused.GetProperty("error").GetString());
            Assert.StartsWith(field + ":", refused.GetProperty("error_description").GetString());
        }

        var stored = await admin.GetJsonAsync(Path(ClientsUrl, registered.GetProperty("client_id").GetString()!));
        Assert.Equal("https://app.test/jwks", stored.GetProperty("jwks_uri").GetString());
        Assert.Equal("https://app.test/backchannel", stored.GetProperty("backchannel_logout_uri").GetString());
    }

    /// <summary>An initial access token is a bearer token: an admin token bound to a DPoP key, sent as one, is refused as invalid.</summary>
    [SkippableFact]
    public async Task With_initial_access_tokens_required_a_DPoP_bound_admin_token_is_refused_as_invalid()
    {
        await using var factory = server.StartServer(new Dictionary<string, string?> { ["Registration:RequireInitialAccessToken"] = "true" });
        var guarded = new AttachedServer(factory, server.Provider);
        var admin = await guarded.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var key = new DpopKey("ES256");
        var tokenResponse = await DpopKey.PostAsync(guarded, "token_endpoint",
            new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "admin" }, await key.ProofAsync(guarded, "POST", "token_endpoint"), admin);
        var bound = (await tokenResponse.ExpectAsync(HttpStatusCode.OK)).GetProperty("access_token").GetString()!;

        var response = await WithBearer(guarded, bound).PostJsonAsync(await guarded.EndpointAsync("registration_endpoint"),
            Json(new { redirect_uris = new[] { "https://app.test/callback" } }));

        Assert.Equal("invalid_token", (await response.ExpectAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString());
        Assert.Contains("invalid_token", response.Headers.WwwAuthenticate.Single().ToString());
    }

    /// <summary>
    /// An error for a self-registered client (no sign-in needed) is shown here, not sent to the registrant's address:
    /// else this server would redirect anyone anywhere (RFC 9700 section 4.11.2). A person who saw the consent page and
    /// declined is sent back with access_denied; that page says the app registered itself and where it answers.
    /// </summary>
    [SkippableFact]
    public async Task Errors_for_a_self_registered_client_are_shown_here_until_the_person_has_seen_its_consent_page()
    {
        var registered = await (await RegisterAsync(new
        {
            client_name = "Totally the bank", redirect_uris = new[] { "https://evil.test/cb" }, token_endpoint_auth_method = "none", scope = "openid",
        })).ExpectAsync(HttpStatusCode.Created);
        var clientId = registered.GetProperty("client_id").GetString()!;
        static bool AtEvil(Uri uri) => uri.Host == "evil.test";

        foreach (var (extra, error) in new[]
        {
            (new Dictionary<string, string?> { ["prompt"] = "none" }, "login_required"),
            (new Dictionary<string, string?> { ["scope"] = "no-such-scope" }, "invalid_scope"),
        })
        {
            var page = await server.CreateBrowser().NavigateAsync(
                await OAuth.AuthorizeUrlAsync(server, clientId, "openid", Pkce.Create(), "https://evil.test/cb", extra), AtEvil);
            Assert.True(page.RedirectTarget is null || !AtEvil(page.RedirectTarget), $"Sent to {page.RedirectTarget} for {string.Join(",", extra)}");
            Assert.Contains(error, page.Body); // the page says which error the app would have heard
        }

        var browser = server.CreateBrowser();
        var consent = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid", Pkce.Create(), "https://evil.test/cb"), AtEvil);
        consent = await OAuth.SignInAsync(browser, consent, await server.CreateUserAsync(), AtEvil);
        Assert.Contains("registered itself", consent.Document.QuerySelector("p.notice")?.TextContent);
        Assert.Contains("evil.test", consent.Document.QuerySelector("p.notice")?.TextContent);
        var declined = await browser.SubmitAsync(consent, button: "button[value=deny]", stopAt: AtEvil);
        Assert.Equal("access_denied", OAuth.QueryOf(declined.RedirectTarget!)["error"]);
    }

    /// <summary>Configured lists replace the defaults (configuration binding would otherwise add to them).</summary>
    [SkippableFact]
    public async Task Configured_allowed_scopes_and_grants_replace_the_defaults()
    {
        await using var factory = server.StartServer(new Dictionary<string, string?>
        {
            ["Registration:AllowedScopes:0"] = "openid", ["Registration:AllowedGrantTypes:0"] = "authorization_code",
        });
        var narrow = new AttachedServer(factory, server.Provider);
        var endpoint = await narrow.EndpointAsync("registration_endpoint");

        var refresh = await narrow.CreateClient().PostJsonAsync(endpoint,
            Json(new { redirect_uris = new[] { "https://app.test/callback" }, grant_types = new[] { "authorization_code", "refresh_token" } }));
        Assert.Equal("invalid_client_metadata", (await refresh.ExpectAsync(HttpStatusCode.BadRequest)).GetProperty("error").GetString());

        var plain = await (await narrow.CreateClient().PostJsonAsync(endpoint, Json(new { redirect_uris = new[] { "https://app.test/callback" } })))
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("openid", plain.GetProperty("scope").GetString());
    }

    /// <summary>
    /// An allowed scope that does not exist (not created yet, or deleted) is left out of the scopes a registration gets
    /// by default, which would otherwise all fail on the client document's rules; asking for it by name still fails.
    /// </summary>
    [SkippableFact]
    public async Task An_allowed_scope_that_does_not_exist_is_left_out_of_the_defaults()
    {
        var missing = Unique.Name("not-created-yet");
        await using var factory = server.StartServer(new Dictionary<string, string?>
        {
            ["Registration:AllowedScopes:0"] = "openid", ["Registration:AllowedScopes:1"] = missing,
        });
        var narrow = new AttachedServer(factory, server.Provider);
        var endpoint = await narrow.EndpointAsync("registration_endpoint");

        var plain = await (await narrow.CreateClient().PostJsonAsync(endpoint, Json(new { redirect_uris = new[] { "https://app.test/callback" } })))
            .ExpectAsync(HttpStatusCode.Created);
        var named = await narrow.CreateClient().PostJsonAsync(endpoint, Json(new { redirect_uris = new[] { "https://app.test/callback" }, scope = missing }));

        Assert.Equal("openid", plain.GetProperty("scope").GetString());
        Assert.Equal("invalid_client_metadata", (await named.ExpectAsync(HttpStatusCode.BadRequest)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task Registration_needs_HTTPS_outside_Development()
    {
        using var http = new HttpClient(server.Factory.CreateReportingHandler()) { BaseAddress = new Uri("http://localhost/") };
        using var content = new StringContent("""{"redirect_uris":["https://app.test/callback"]}""", Encoding.UTF8, "application/json");

        var response = await http.PostAsync("/connect/register", content);

        Assert.Equal("invalid_request", (await response.ExpectAsync(HttpStatusCode.BadRequest)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task A_request_in_a_charset_without_a_decoder_is_refused_not_a_server_error()
    {
        using var content = new StringContent("""{"redirect_uris":["https://app.test/callback"]}""");
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/json; charset=bogus");

        var response = await server.CreateClient().PostAsync(await server.EndpointAsync("registration_endpoint"), content);

        Assert.Equal("invalid_client_metadata", (await response.ExpectAsync(HttpStatusCode.BadRequest)).GetProperty("error").GetString());
    }

    /// <summary>An app in a browser (say, an MCP client in a web page) registers from its own origin: any origin, no credentials.</summary>
    [SkippableFact]
    public async Task A_browser_app_on_any_origin_may_register()
    {
        using var preflight = new HttpRequestMessage(HttpMethod.Options, await server.EndpointAsync("registration_endpoint"));
        preflight.Headers.Add("Origin", "https://inspector.example");
        preflight.Headers.Add("Access-Control-Request-Method", "PUT");
        preflight.Headers.Add("Access-Control-Request-Headers", "content-type");

        var response = await server.CreateClient().SendAsync(preflight);

        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        Assert.Equal("*", response.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.False(response.Headers.Contains("Access-Control-Allow-Credentials"));
    }

    /// <summary>
    /// Anyone may register a client with any post_logout_redirect_uri, and get an id token for it with an account of their
    /// own: followed at once (a valid hint, nobody signed in), that made this server an open redirector. The person is
    /// asked first, shown where it leads, whether signed in or not, and is sent there only after confirming.
    /// </summary>
    [SkippableFact]
    public async Task A_self_registered_clients_post_logout_redirect_uri_is_followed_only_after_the_person_confirms_seeing_where_it_leads()
    {
        const string SignedOut = "https://tool.example/bye";
        var clientId = (await (await RegisterAsync(new
        {
            redirect_uris = new[] { LoopbackRedirect }, post_logout_redirect_uris = new[] { SignedOut }, token_endpoint_auth_method = "none", scope = "openid",
        })).ExpectAsync(HttpStatusCode.Created)).GetProperty("client_id").GetString()!;
        var pkce = Pkce.Create();
        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid", pkce, LoopbackRedirect), IsLoopbackApp);
        page = await OAuth.SignInAsync(browser, page, await server.CreateUserAsync(), IsLoopbackApp);
        page = await browser.SubmitAsync(page, button: "button[value=accept]", stopAt: IsLoopbackApp);
        var tokens = await OAuth.RedeemAsync(server, new TestClient(clientId, null, new()), OAuth.QueryOf(page.RedirectTarget!)["code"], pkce, LoopbackRedirect);
        var endSession = QueryHelpers.AddQueryString(await server.EndpointAsync("end_session_endpoint"), new Dictionary<string, string?>
        {
            ["id_token_hint"] = tokens.GetProperty("id_token").GetString(), ["post_logout_redirect_uri"] = SignedOut, ["state"] = "s",
        });
        static bool IsTool(Uri uri) => uri.Host == "tool.example";

        foreach (var visitor in new[] { server.CreateBrowser(), browser }) // nobody signed in; then the hint's own user
        {
            var asked = await visitor.NavigateAsync(endSession, IsTool);
            Assert.True(asked.RedirectTarget is null && asked.Status == HttpStatusCode.OK, $"{(int)asked.Status} -> {asked.RedirectTarget}");
            Assert.Contains("tool.example", asked.Document.QuerySelector(".notice")?.TextContent);

            var confirmed = await visitor.SubmitAsync(asked, button: "button[name=confirm_sign_out]", stopAt: IsTool);
            Assert.Equal(SignedOut + "?state=s", confirmed.RedirectTarget?.AbsoluteUri);
        }
    }

    /// <summary>The consent page names where a self-registered client receives the answer as DNS has it: a look-alike name shows as punycode.</summary>
    [SkippableFact]
    public async Task The_consent_page_shows_a_self_registered_clients_redirect_host_in_punycode()
    {
        const string LookAlike = "p\u0430ypal.test"; // a Cyrillic "a"
        var host = System.Text.RegularExpressions.Regex.Unescape(LookAlike);
        var redirect = $"https://{host}/cb";
        var clientId = (await (await RegisterAsync(new { redirect_uris = new[] { redirect }, token_endpoint_auth_method = "none", scope = "openid" }))
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("client_id").GetString()!;
        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid", Pkce.Create(), redirect), uri => uri.Host != TestServerFactory.Authority.Host);
        page = await OAuth.SignInAsync(browser, page, await server.CreateUserAsync(), uri => uri.Host != TestServerFactory.Authority.Host);

        var notice = page.Document.QuerySelector(".notice")?.TextContent ?? "";
        Assert.Contains(new System.Globalization.IdnMapping().GetAscii(host), notice);
        Assert.DoesNotContain(host, notice);
    }

    private static Func<Uri, bool> IsLoopbackApp => uri => uri.Host == "127.0.0.1" && uri.Port == 33418;

    private async Task<HttpResponseMessage> RegisterAsync(object metadata) =>
        await server.CreateClient().PostJsonAsync(await server.EndpointAsync("registration_endpoint"), Json(metadata));

    private async Task<HttpResponseMessage> ManageAsync(HttpMethod method, string uri, string? token, object? body = null, ServerFixture? on = null)
    {
        using var request = new HttpRequestMessage(method, uri);
        if (body is not null)
        {
            request.Content = new StringContent(Json(body), Encoding.UTF8, "application/json");
        }

        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return await (on ?? server).CreateClient().SendAsync(request);
    }
}

/// <summary>Registration is off unless enabled: the endpoint is not there, and discovery does not name it.</summary>
public sealed class RegistrationOffTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    [Fact]
    public async Task Without_the_setting_there_is_no_registration_endpoint()
    {
        using var content = new StringContent("""{"redirect_uris":["https://app.test/callback"]}""", Encoding.UTF8, "application/json");

        Assert.Equal(HttpStatusCode.NotFound, (await server.CreateClient().PostAsync("/connect/register", content)).StatusCode);
        var discovery = await server.CreateClient().GetFromJsonAsync<JsonElement>("/.well-known/openid-configuration");
        Assert.False(discovery.TryGetProperty("registration_endpoint", out _));
    }
}

public sealed class SqliteRegistrationFixture : SqliteServerFixture
{
    public SqliteRegistrationFixture() => Settings["Registration:Enabled"] = "true";
}

public sealed class PostgreSqlRegistrationFixture : PostgreSqlServerFixture
{
    public PostgreSqlRegistrationFixture() => Settings["Registration:Enabled"] = "true";
}

public sealed class SqliteRegistrationTests(SqliteRegistrationFixture server)
    : RegistrationTests<SqliteRegistrationFixture>(server), IClassFixture<SqliteRegistrationFixture>;

public sealed class PostgreSqlRegistrationTests(PostgreSqlRegistrationFixture server)
    : RegistrationTests<PostgreSqlRegistrationFixture>(server), IClassFixture<PostgreSqlRegistrationFixture>;
