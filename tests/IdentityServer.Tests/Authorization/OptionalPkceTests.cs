using System.Net;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// PKCE is required per client: every client by default, and always a public one; a confidential client registered
/// with <c>require_pkce: false</c> may sign people in without it, and still gets PKCE's checks when it does send a
/// challenge (no downgrade: a verifier for a code asked for without one is refused, RFC 9700 section 2.1.1).
/// </summary>
public abstract class OptionalPkceTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_confidential_client_that_opted_out_signs_people_in_without_pkce()
    {
        var client = await CodeFlowClientAsync(requirePkce: false);

        var code = await CodeAsync(client, pkce: null);
        var response = await RedeemAsync(client, code, verifier: null);

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.False(string.IsNullOrEmpty(json.GetProperty("access_token").GetString()));
        Assert.False(string.IsNullOrEmpty(json.GetProperty("id_token").GetString()));
    }

    [SkippableFact]
    public async Task A_client_that_opted_out_but_sent_a_challenge_must_send_its_verifier()
    {
        var client = await CodeFlowClientAsync(requirePkce: false);
        var pkce = Pkce.Create();

        await AssertErrorAsync(await RedeemAsync(client, await CodeAsync(client, pkce), verifier: null), "invalid_request");
        await AssertErrorAsync(await RedeemAsync(client, await CodeAsync(client, pkce), Pkce.Create().Verifier), "invalid_grant");
        var redeemed = await RedeemAsync(client, await CodeAsync(client, pkce), pkce.Verifier);
        Assert.Equal(HttpStatusCode.OK, redeemed.StatusCode);
    }

    [SkippableFact]
    public async Task A_verifier_for_a_code_asked_for_without_a_challenge_is_refused()
    {
        var client = await CodeFlowClientAsync(requirePkce: false);

        var response = await RedeemAsync(client, await CodeAsync(client, pkce: null), Pkce.Create().Verifier);

        await AssertErrorAsync(response, "invalid_request");
    }

    [SkippableFact]
    public async Task A_confidential_client_registered_as_usual_cannot_leave_pkce_out_at_authorize_or_par()
    {
        var client = await CodeFlowClientAsync(requirePkce: null);

        Assert.Equal("invalid_request", await AuthorizeWithoutPkceErrorAsync(client.ClientId));

        var pushed = await OAuth.PostFormAsync(server, "pushed_authorization_request_endpoint", new Dictionary<string, string>
        {
            ["response_type"] = "code", ["client_id"] = client.ClientId, ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = "openid",
        }, basicAuth: client);
        await AssertErrorAsync(pushed, "invalid_request");
    }

    [SkippableFact]
    public async Task A_public_client_is_held_to_pkce_even_when_stored_without_the_validator()
    {
        var client = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
            c.RequirePkce = false;
        });

        Assert.Equal("invalid_request", await AuthorizeWithoutPkceErrorAsync(client.ClientId));
    }

    [SkippableFact]
    public async Task The_opt_out_reads_back_from_the_admin_api_and_a_replace_without_it_requires_pkce_again()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("legacy-web");
        object Document(bool? requirePkce) => requirePkce is null
            ? new { client_id = clientId, redirect_uris = new[] { OAuth.AppRedirectUri }, grant_types = new[] { "authorization_code" }, scope = "openid", consent_type = "implicit" }
            : new { client_id = clientId, redirect_uris = new[] { OAuth.AppRedirectUri }, grant_types = new[] { "authorization_code" }, scope = "openid", consent_type = "implicit", require_pkce = requirePkce };

        var created = await (await admin.PostJsonAsync(ClientsUrl, Json(Document(false)))).ExpectAsync(HttpStatusCode.Created);
        var client = new TestClient(clientId, created.GetProperty("client_secret").GetString(), new());
        var read = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal(JsonValueKind.False, read.GetProperty("require_pkce").ValueKind);
        Assert.Equal(HttpStatusCode.OK, (await RedeemAsync(client, await CodeAsync(client, pkce: null), verifier: null)).StatusCode);

        var current = await admin.GetAsync(Path(ClientsUrl, clientId));
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Document(null)), ifMatch: ETagOf(current))).ExpectAsync(HttpStatusCode.OK);

        Assert.False((await admin.GetJsonAsync(Path(ClientsUrl, clientId))).TryGetProperty("require_pkce", out _));
        Assert.Equal("invalid_request", await AuthorizeWithoutPkceErrorAsync(clientId));
    }

    /// <summary>The error an authorization request without a code challenge is sent back to the app with.</summary>
    private async Task<string> AuthorizeWithoutPkceErrorAsync(string clientId)
    {
        var page = await server.CreateBrowser().NavigateAsync(await OAuth.AuthorizeUrlAsync(server, clientId, "openid", pkce: null), OAuth.IsApp);
        Assert.True(page.RedirectTarget is not null && OAuth.IsApp(page.RedirectTarget), $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        var result = OAuth.QueryOf(page.RedirectTarget!);
        Assert.False(result.ContainsKey("code"));
        return result["error"];
    }

    private Task<TestClient> CodeFlowClientAsync(bool? requirePkce) =>
        server.CreateConfidentialClientAsync(c =>
        {
            c.GrantTypes = ["authorization_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
            c.ConsentType = "implicit";
            c.RequirePkce = requirePkce;
        });

    private async Task<string> CodeAsync(TestClient client, Pkce? pkce)
    {
        var user = await server.CreateUserAsync();
        var result = await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid", pkce), user);
        Assert.True(result.ContainsKey("code"), string.Join(", ", result));
        return result["code"];
    }

    private Task<HttpResponseMessage> RedeemAsync(TestClient client, string code, string? verifier)
    {
        var form = new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["code"] = code,
            ["redirect_uri"] = OAuth.AppRedirectUri,
        };
        if (verifier is not null)
        {
            form["code_verifier"] = verifier;
        }

        return OAuth.PostTokenAsync(server, form, basicAuth: client);
    }

    private static async Task AssertErrorAsync(HttpResponseMessage response, string error)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"Expected 400, got {(int)response.StatusCode}: {json}");
        Assert.Equal(error, json.GetProperty("error").GetString());
    }
}

public sealed class SqliteOptionalPkceTests(SqliteServerFixture server)
    : OptionalPkceTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlOptionalPkceTests(PostgreSqlServerFixture server)
    : OptionalPkceTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
