using System.Net;
using System.Text.Json;
using IdentityServer.Admin;
using IdentityServer.Clients;
using IdentityServer.Tests.Admin;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A client's own token lifetimes (<c>access_token_lifetime</c>, <c>refresh_token_lifetime</c>, in seconds), given to
/// every token of that client, token exchange included, up to the server's (its signing keys stay published for the
/// server's lifetimes only); absent, the server's (1 hour, 14 days here).
/// </summary>
public abstract class ClientTokenLifetimeTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_clients_access_tokens_live_as_long_as_it_says_and_others_as_long_as_the_server_says()
    {
        var shortLived = await server.CreateConfidentialClientAsync(c => c.AccessTokenLifetime = 300);
        var ordinary = await server.CreateConfidentialClientAsync();

        var shortToken = await ClientCredentialsTokenAsync(shortLived);
        var ordinaryToken = await ClientCredentialsTokenAsync(ordinary);

        Assert.Equal(300, Lifetime(Jwt.Payload(shortToken)));
        Assert.Equal(3600, Lifetime(Jwt.Payload(ordinaryToken)));
        var introspected = await OAuth.IntrospectAsync(server, shortLived, shortToken);
        Assert.Equal(300, Lifetime(introspected));
    }

    [SkippableFact]
    public async Task A_clients_refresh_tokens_live_as_long_as_it_says_and_so_do_those_they_turn_into()
    {
        var client = await server.CreateClientAsync(c =>
        {
            c.ClientSecret = Unique.Secret();
            c.TokenEndpointAuthMethod = "client_secret_basic";
            c.GrantTypes = ["authorization_code", "refresh_token"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid offline_access";
            c.ConsentType = "implicit";
            c.RefreshTokenLifetime = 600;
            c.AccessTokenLifetime = 120;
        });

        var pkce = Pkce.Create();
        var code = (await OAuth.AuthorizeAsync(server.CreateBrowser(), await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid offline_access", pkce),
            await server.CreateUserAsync()))["code"];
        var tokens = await TokenAsync(client, new()
        {
            ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = OAuth.AppRedirectUri, ["code_verifier"] = pkce.Verifier,
        });
        var refreshToken = tokens.GetProperty("refresh_token").GetString()!;
        Assert.Equal(600, Lifetime(await OAuth.IntrospectAsync(server, client, refreshToken)));
        Assert.Equal(120, Lifetime(Jwt.Payload(tokens.GetProperty("access_token").GetString()!)));
        var refreshed = await TokenAsync(client, new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refreshToken });
        Assert.Equal(600, Lifetime(await OAuth.IntrospectAsync(server, client, refreshed.GetProperty("refresh_token").GetString()!)));
        Assert.Equal(120, Lifetime(Jwt.Payload(refreshed.GetProperty("access_token").GetString()!)));
    }

    /// <summary>Through the admin API and form: the fields are read back as written, and a lifetime out of bounds or not a whole number is refused.</summary>
    [SkippableFact]
    public async Task The_lifetimes_round_trip_through_the_admin_api_and_form_and_values_out_of_bounds_are_refused()
    {
        var admin = await AdminApiCalls.AdminAsync(server);
        string Document(int? access, int? refresh) => AdminApiCalls.Json(new Dictionary<string, object?>
        {
            ["client_id"] = Unique.Name("lifetimes"), ["grant_types"] = new[] { "authorization_code", "refresh_token" },
            ["redirect_uris"] = new[] { OAuth.AppRedirectUri },
            ["token_endpoint_auth_method"] = "client_secret_basic", ["access_token_lifetime"] = access, ["refresh_token_lifetime"] = refresh,
        });

        var created = await admin.PostJsonAsync("/api/admin/clients", Document(900, 86_400));
        var body = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement;
        Assert.True(created.StatusCode == HttpStatusCode.Created, body.ToString());
        Assert.Equal(900, body.GetProperty("access_token_lifetime").GetInt32());
        Assert.Equal(86_400, body.GetProperty("refresh_token_lifetime").GetInt32());
        var asText = await admin.PostJsonAsync("/api/admin/clients", Document(900, 86_400).Replace("900", "\"900\"", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.BadRequest, asText.StatusCode); // a number, not a string holding one

        // The admin form shows them, and saves them back unchanged; a value that is not a whole number is refused there.
        var browser = await AdminPages.SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var clientId = body.GetProperty("client_id").GetString()!;
        var form = await browser.NavigateAsync(AdminPages.Url($"/admin/clients/{clientId}"));
        Assert.Equal("900", form.Document.QuerySelector("#Form_AccessTokenLifetime")!.GetAttribute("value"));
        await browser.SubmitAsync(form, "form.wide-form", new Dictionary<string, string[]> { ["Form.AccessTokenLifetime"] = ["600"] });
        var saved = await admin.GetJsonAsync(AdminApiCalls.Path(AdminApiCalls.ClientsUrl, clientId));
        Assert.Equal(600, saved.GetProperty("access_token_lifetime").GetInt32());
        Assert.Equal(86_400, saved.GetProperty("refresh_token_lifetime").GetInt32());
        var edited = await browser.NavigateAsync(AdminPages.Url($"/admin/clients/{clientId}"));
        var notANumber = await browser.SubmitAsync(edited, "form.wide-form", new Dictionary<string, string[]> { ["Form.AccessTokenLifetime"] = ["1.5"] });
        Assert.NotEmpty(AdminPages.FieldErrors(notANumber));
        Assert.Equal(600, (await admin.GetJsonAsync(AdminApiCalls.Path(AdminApiCalls.ClientsUrl, clientId))).GetProperty("access_token_lifetime").GetInt32());

        foreach (var (access, refresh, field) in new (int?, int?, string)[]
        {
            (30, null, "access_token_lifetime"), (400 * 86_400, null, "access_token_lifetime"), (null, 59, "refresh_token_lifetime"),
        })
        {
            var refused = await admin.PostJsonAsync("/api/admin/clients", Document(access, refresh));
            var error = await refused.Content.ReadAsStringAsync();
            Assert.True(refused.StatusCode == HttpStatusCode.BadRequest, error);
            Assert.Contains(field, error);
        }
    }

    /// <summary>
    /// A client's lifetime longer than the server's is cut to it where tokens are made (the keys are kept for the server's
    /// only): one stored before the server's was lowered too, and such a client is still saved unchanged.
    /// </summary>
    [SkippableFact]
    public async Task A_lifetime_longer_than_the_servers_is_cut_to_it_and_the_client_still_saves_unchanged()
    {
        var longer = await server.CreateConfidentialClientAsync(c => c.AccessTokenLifetime = 7200);
        Assert.Equal(3600, Lifetime(Jwt.Payload(await ClientCredentialsTokenAsync(longer, server))));

        var stored = await server.CreateConfidentialClientAsync(c => c.AccessTokenLifetime = 1800);
        await using var lowered = server.StartServer(new Dictionary<string, string?> { ["Tokens:AccessTokenLifetime"] = "00:10:00" });
        var attached = new AttachedServer(lowered, server.Provider);
        Assert.Equal(600, Lifetime(Jwt.Payload(await ClientCredentialsTokenAsync(stored, attached))));

        var admin = await AdminApiCalls.AdminAsync(attached);
        var read = await admin.GetAsync(AdminApiCalls.Path(AdminApiCalls.ClientsUrl, stored.ClientId));
        var document = await read.Content.ReadAsStringAsync();
        var saved = await admin.PutJsonAsync(AdminApiCalls.Path(AdminApiCalls.ClientsUrl, stored.ClientId), document, read.Headers.ETag?.Tag);
        Assert.True(saved.StatusCode == HttpStatusCode.OK, await saved.Content.ReadAsStringAsync());
    }

    private async Task<string> ClientCredentialsTokenAsync(TestClient client, ServerFixture? on = null) =>
        (await TokenAsync(client, new() { ["grant_type"] = "client_credentials" }, on)).GetProperty("access_token").GetString()!;

    private async Task<JsonElement> TokenAsync(TestClient client, Dictionary<string, string> form, ServerFixture? on = null)
    {
        var response = await OAuth.PostTokenAsync(on ?? server, form, client);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }

    private static long Lifetime(JsonElement claims) => claims.GetProperty("exp").GetInt64() - claims.GetProperty("iat").GetInt64();
}

public sealed class SqliteClientTokenLifetimeTests(SqliteServerFixture server) : ClientTokenLifetimeTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlClientTokenLifetimeTests(PostgreSqlServerFixture server) : ClientTokenLifetimeTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
