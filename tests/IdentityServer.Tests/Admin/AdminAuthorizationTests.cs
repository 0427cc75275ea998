using System.Net;
using System.Text;
using IdentityServer.Tests.Authorization;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;
using static IdentityServer.Tests.Admin.AdminPages;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// Who may call the admin API: an access token of this server with the admin scope, or an admin's session cookie
/// (with the antiforgery token for changes). Everyone else gets 401 or 403 with WWW-Authenticate, never a login page.
/// </summary>
public abstract class AdminAuthorizationTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    public static TheoryData<string, string> Endpoints => new()
    {
        { "GET", "/api/admin/clients" },
        { "POST", "/api/admin/clients" },
        { "GET", "/api/admin/clients/any" },
        { "PUT", "/api/admin/clients/any" },
        { "DELETE", "/api/admin/clients/any" },
        { "POST", "/api/admin/clients/any/secret" },
        { "GET", "/api/admin/scopes" },
        { "POST", "/api/admin/scopes" },
        { "GET", "/api/admin/scopes/any" },
        { "PUT", "/api/admin/scopes/any" },
        { "DELETE", "/api/admin/scopes/any" },
        { "GET", "/api/admin/users" },
        { "POST", "/api/admin/users" },
        { "GET", "/api/admin/users/any" },
        { "PUT", "/api/admin/users/any" },
        { "DELETE", "/api/admin/users/any" },
        { "POST", "/api/admin/users/any/password" },
        { "GET", "/api/admin/roles" },
        { "POST", "/api/admin/roles" },
        { "DELETE", "/api/admin/roles/any" },
        { "GET", "/api/admin/audit" },
        { "GET", "/api/admin/no-such-thing" },
    };

    [SkippableTheory]
    [MemberData(nameof(Endpoints))]
    public async Task Every_endpoint_answers_an_anonymous_caller_401_with_a_bearer_challenge(string method, string path)
    {
        var response = await server.CreateClient().SendJsonAsync(new HttpMethod(method), path, method is "POST" or "PUT" ? "{}" : null);

        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Null(response.Headers.Location);
        await response.ExpectErrorAsync(HttpStatusCode.Unauthorized, "unauthorized");
    }

    [SkippableTheory]
    [MemberData(nameof(Endpoints))]
    public async Task Every_endpoint_answers_a_token_without_the_admin_scope_403(string method, string path)
    {
        var other = WithBearer(server, await OtherScopeTokenAsync());

        var response = await other.SendJsonAsync(new HttpMethod(method), path, method is "POST" or "PUT" ? "{}" : null);

        Assert.Contains("insufficient_access", response.Headers.WwwAuthenticate.Single().ToString());
        await response.ExpectErrorAsync(HttpStatusCode.Forbidden, "insufficient_access");
    }

    [SkippableFact]
    public async Task A_token_with_the_admin_scope_is_let_in_and_carries_the_admin_audience()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var token = await TokenAsync(server, client.ClientId, client.ClientSecret!, "admin");

        var response = await WithBearer(server, token).GetAsync(ClientsUrl);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(["urn:identity-server:admin"], Jwt.Strings(Jwt.Payload(token).GetProperty("aud")));
        var validated = await OAuth.ValidateJwtAsync(server, token, "urn:identity-server:admin", "at+jwt");
        Assert.True(validated.IsValid, validated.Exception?.ToString());
    }

    [SkippableFact]
    public async Task A_tampered_token_a_revoked_token_and_a_token_of_a_deleted_client_are_refused_401()
    {
        var admin = await AdminAsync(server);
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var token = await TokenAsync(server, client.ClientId, client.ClientSecret!, "admin");
        var parts = token.Split('.');
        var signature = parts[2].ToCharArray();
        signature[signature.Length / 2] = signature[signature.Length / 2] == 'A' ? 'B' : 'A';

        var tampered = await WithBearer(server, $"{parts[0]}.{parts[1]}.{new string(signature)}").GetAsync(ClientsUrl);
        Assert.Contains("invalid_token", tampered.Headers.WwwAuthenticate.Single().ToString());
        await tampered.ExpectErrorAsync(HttpStatusCode.Unauthorized, "invalid_token");
        Assert.Equal(HttpStatusCode.OK, (await WithBearer(server, token).GetAsync(ClientsUrl)).StatusCode);

        var revoked = await OAuth.PostFormAsync(server, "revocation_endpoint", new Dictionary<string, string> { ["token"] = token }, client);
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await WithBearer(server, token).GetAsync(ClientsUrl)).StatusCode);

        var second = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var secondToken = await TokenAsync(server, second.ClientId, second.ClientSecret!, "admin");
        await (await admin.DeleteAsync(Path(ClientsUrl, second.ClientId), null)).ExpectAsync(HttpStatusCode.NoContent);
        Assert.Equal(HttpStatusCode.Unauthorized, (await WithBearer(server, secondToken).GetAsync(ClientsUrl)).StatusCode);
    }

    /// <summary>
    /// The admin API takes bearer tokens: one bound to a key (DPoP, cnf.jkt) presented as a bearer token shows no key and
    /// is refused as invalid (RFC 9449 section 7.2), on every endpoint, never a server error.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(Endpoints))]
    public async Task Every_endpoint_answers_a_DPoP_bound_token_sent_as_a_bearer_token_401_invalid_token(string method, string path)
    {
        var bound = WithBearer(server, await BoundAdminTokenAsync());

        var response = await bound.SendJsonAsync(new HttpMethod(method), path, method is "POST" or "PUT" ? "{}" : null);

        Assert.Contains("invalid_token", response.Headers.WwwAuthenticate.Single().ToString());
        await response.ExpectErrorAsync(HttpStatusCode.Unauthorized, "invalid_token");
    }

    [SkippableFact]
    public async Task A_clients_token_is_refused_once_the_client_is_no_longer_allowed_the_admin_scope()
    {
        var admin = await AdminAsync(server);
        var otherScope = await server.CreateScopeAsync(TestApi.NewAudience());
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var token = await TokenAsync(server, client.ClientId, client.ClientSecret!, "admin");
        Assert.Equal(HttpStatusCode.OK, (await WithBearer(server, token).GetAsync(ClientsUrl)).StatusCode);

        var read = await admin.GetAsync(Path(ClientsUrl, client.ClientId));
        var document = System.Text.Json.Nodes.JsonNode.Parse(await read.Content.ReadAsStringAsync())!.AsObject();
        document["scope"] = otherScope;
        await (await admin.PutJsonAsync(Path(ClientsUrl, client.ClientId), document.ToJsonString(), ETagOf(read))).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal(HttpStatusCode.Forbidden, (await WithBearer(server, token).GetAsync(ClientsUrl)).StatusCode);
    }

    [SkippableFact]
    public async Task A_token_of_another_api_is_refused_even_for_a_user_in_the_admin_role()
    {
        var audience = TestApi.NewAudience();
        var apiScope = await server.CreateScopeAsync(audience);
        var spa = await server.CreatePublicClientAsync($"openid roles {apiScope}", consentType: "implicit");
        var user = await server.CreateUserAsync(null, "admin");
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), spa, user, $"openid roles {apiScope}");
        var accessToken = tokens.GetProperty("access_token").GetString()!;
        Assert.Contains("admin", Jwt.Payload(accessToken).GetProperty("role").ToString());

        var response = await WithBearer(server, accessToken).GetAsync(ClientsUrl);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    [SkippableFact]
    public async Task A_persons_token_with_the_admin_scope_works_only_while_that_person_is_an_admin()
    {
        var spa = await server.CreatePublicClientAsync("openid admin", consentType: "implicit");
        var plain = await server.CreateUserAsync();
        var adminUser = await server.CreateUserAsync(null, "admin");
        var plainToken = (await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), spa, plain, "openid admin")).GetProperty("access_token").GetString()!;
        var adminToken = (await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), spa, adminUser, "openid admin")).GetProperty("access_token").GetString()!;

        Assert.Equal(HttpStatusCode.Forbidden, (await WithBearer(server, plainToken).GetAsync(ClientsUrl)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await WithBearer(server, adminToken).GetAsync(ClientsUrl)).StatusCode);

        // Taking the role away takes effect at once, for a token issued while the person had it (another admin
        // remains, as the server insists).
        await server.CreateUserAsync(null, "admin");
        var admin = await AdminAsync(server);
        var read = await admin.GetAsync(Path(UsersUrl, adminUser.Id));
        await (await admin.PutJsonAsync(Path(UsersUrl, adminUser.Id), Json(new { email = adminUser.Email, email_verified = true, roles = Array.Empty<string>() }), ETagOf(read)))
            .ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.Forbidden, (await WithBearer(server, adminToken).GetAsync(ClientsUrl)).StatusCode);
    }

    [SkippableFact]
    public async Task A_session_cookie_without_the_admin_role_is_refused_403_and_not_redirected()
    {
        var browser = await SignedInAsync(server, await server.CreateUserAsync());

        var read = await browser.SendAsync(new HttpRequestMessage(HttpMethod.Get, Url(ClientsUrl)));
        var write = await browser.SendAsync(new HttpRequestMessage(HttpMethod.Post, Url(RolesUrl))
        {
            Content = new StringContent(Json(new { name = Unique.Name("role") }), Encoding.UTF8, "application/json"),
        });

        Assert.Equal(HttpStatusCode.Forbidden, read.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, write.StatusCode);
        Assert.Null(read.Headers.Location);
    }

    [SkippableFact]
    public async Task An_admins_session_cookie_reads_the_api_and_changes_it_only_with_the_antiforgery_token()
    {
        var user = await server.CreateUserAsync(null, "admin");
        var browser = await SignedInAsync(server, user);
        var role = Unique.Name("role");

        var read = await browser.SendAsync(new HttpRequestMessage(HttpMethod.Get, Url(RolesUrl)));
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);

        HttpRequestMessage Create() => new(HttpMethod.Post, Url(RolesUrl))
        {
            Content = new StringContent(Json(new { name = role }), Encoding.UTF8, "application/json"),
        };
        var forged = await browser.SendAsync(Create());
        await forged.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request");

        var page = await browser.NavigateAsync(Url("/admin/roles"));
        var token = page.Document.QuerySelector("input[name=__RequestVerificationToken]")!.GetAttribute("value")!;
        var request = Create();
        request.Headers.Add("RequestVerificationToken", token);
        var created = await browser.SendAsync(request);

        await created.ExpectAsync(HttpStatusCode.Created);
        var admin = await AdminAsync(server);
        var audit = (await AuditForAsync(admin, "role", role)).EnumerateArray().Single();
        Assert.Equal("user", audit.GetProperty("actor_type").GetString());
        Assert.Equal(user.Id, audit.GetProperty("actor_id").GetString());
    }

    [SkippableFact]
    public async Task The_openapi_document_describes_the_admin_api_and_its_bearer_scheme()
    {
        var response = await server.CreateClient().GetAsync("/api/admin/openapi/admin.json");
        var document = await response.ExpectAsync(HttpStatusCode.OK);

        var paths = document.GetProperty("paths");
        foreach (var path in new[] { "/api/admin/clients", "/api/admin/clients/{clientId}", "/api/admin/clients/{clientId}/secret",
                     "/api/admin/scopes", "/api/admin/scopes/{name}", "/api/admin/users", "/api/admin/users/{id}",
                     "/api/admin/users/{id}/password", "/api/admin/roles", "/api/admin/roles/{name}", "/api/admin/audit" })
        {
            Assert.True(paths.TryGetProperty(path, out _), $"{path} is not in the OpenAPI document");
        }

        Assert.False(paths.TryGetProperty("/connect/token", out _));
        var create = paths.GetProperty("/api/admin/clients").GetProperty("post");
        Assert.True(create.GetProperty("requestBody").GetProperty("content").TryGetProperty("application/json", out _));
        Assert.Equal("bearer", document.GetProperty("components").GetProperty("securitySchemes").GetProperty("bearer").GetProperty("scheme").GetString());
        var schemas = document.GetProperty("components").GetProperty("schemas").ToString();
        Assert.Contains("redirect_uris", schemas);
        Assert.Contains("token_endpoint_auth_method", schemas);
        var page = paths.GetProperty("/api/admin/users").GetProperty("get").GetProperty("parameters").EnumerateArray()
            .Single(p => p.GetProperty("name").GetString() == "page").GetProperty("schema");
        if (page.TryGetProperty("$ref", out var reference))
        {
            page = document.GetProperty("components").GetProperty("schemas").GetProperty(reference.GetString()!.Split('/')[^1]);
        }

        Assert.Equal("integer", page.GetProperty("type").GetString());

        // Every key in the list has a use (sig, or id-sig for the RSA keys of identity tokens beside ES256 ones).
        var keyDocument = document.GetProperty("components").GetProperty("schemas").GetProperty("KeyDocument");
        Assert.Contains("use", keyDocument.GetProperty("required").EnumerateArray().Select(r => r.GetString()));
    }

    [SkippableFact]
    public async Task An_unknown_admin_path_is_a_json_404_and_an_unknown_method_a_json_405_naming_the_allowed_ones()
    {
        var admin = await AdminAsync(server);

        await (await admin.GetAsync("/api/admin/no-such-thing")).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.SendJsonAsync(HttpMethod.Patch, Path(ClientsUrl, "any") + "/no-such-thing", "{}")).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        var patch = await admin.SendJsonAsync(HttpMethod.Patch, Path(ClientsUrl, "any"), "{}");
        Assert.Equal("DELETE, GET, HEAD, PUT", string.Join(", ", patch.Content.Headers.Allow));
        await patch.ExpectErrorAsync(HttpStatusCode.MethodNotAllowed, "method_not_allowed");
        var putList = await admin.SendJsonAsync(HttpMethod.Put, ClientsUrl, "{}");
        Assert.Equal("GET, HEAD, POST", string.Join(", ", putList.Content.Headers.Allow));
        await putList.ExpectErrorAsync(HttpStatusCode.MethodNotAllowed, "method_not_allowed");
    }

    /// <summary>RFC 9110 9.3.2: whatever answers GET answers HEAD, with the same status and headers.</summary>
    [SkippableFact]
    public async Task Every_admin_read_answers_head_as_it_answers_get()
    {
        var admin = await AdminAsync(server);
        var client = await server.CreateConfidentialClientAsync();

        foreach (var url in new[] { ClientsUrl, Path(ClientsUrl, client.ClientId), "/api/admin/keys", "/api/admin/audit", "/api/admin/openapi/admin.json" })
        {
            var get = await admin.GetAsync(url);
            var head = await admin.SendAsync(new HttpRequestMessage(HttpMethod.Head, url));

            Assert.True(head.StatusCode == get.StatusCode && get.StatusCode == HttpStatusCode.OK, $"{url}: GET {get.StatusCode}, HEAD {head.StatusCode}");
            Assert.Equal(get.Content.Headers.ContentType, head.Content.Headers.ContentType);
            Assert.Equal(get.Headers.ETag, head.Headers.ETag);
        }

        Assert.Equal(HttpStatusCode.NotFound, (await admin.SendAsync(new HttpRequestMessage(HttpMethod.Head, Path(ClientsUrl, "no-such-client")))).StatusCode);
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ServerFixture, Task<string>> BoundAdminTokens = new();

    /// <summary>An admin client's access token bound to its DPoP key (one per server, as the theory asks for it per endpoint).</summary>
    private Task<string> BoundAdminTokenAsync() => BoundAdminTokens.GetValue(server, async s =>
    {
        var client = await s.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var key = new DpopKey("ES256");
        var response = await DpopKey.PostAsync(s, "token_endpoint", new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "admin" },
            await key.ProofAsync(s, "POST", "token_endpoint"), client);
        var token = (await response.ExpectAsync(HttpStatusCode.OK)).GetProperty("access_token").GetString()!;
        Assert.Equal(key.Thumbprint, Jwt.Payload(token).GetProperty("cnf").GetProperty("jkt").GetString());
        return token;
    });

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ServerFixture, Task<string>> OtherScopeTokens = new();

    /// <summary>A valid access token of this server for another API (one per server: the theory asks for it per endpoint).</summary>
    private Task<string> OtherScopeTokenAsync() =>
        OtherScopeTokens.GetValue(server, async s => await MachineTokenAsync(s, await s.CreateScopeAsync(TestApi.NewAudience())));
}

public sealed class SqliteAdminAuthorizationTests(SqliteServerFixture server)
    : AdminAuthorizationTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminAuthorizationTests(PostgreSqlServerFixture server)
    : AdminAuthorizationTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
