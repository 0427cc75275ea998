using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>The scopes of the admin API: their resources become the audience of tokens; the admin scope is built in.</summary>
public abstract class AdminScopeApiTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_scope_created_through_the_api_puts_its_resource_in_the_tokens_of_clients_given_it()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("orders");
        var audience = TestApi.NewAudience();

        var created = await admin.PostJsonAsync(ScopesUrl, Json(new { name, display_name = "Orders", description = "Read orders", resources = new[] { audience } }));
        var body = await created.ExpectAsync(HttpStatusCode.Created);
        Assert.Equal($"/api/admin/scopes/{name}", created.Headers.Location?.OriginalString);
        Assert.Equal("Orders", body.GetProperty("display_name").GetString());
        var read = await admin.GetAsync(Path(ScopesUrl, name));
        Assert.Equal(ETagOf(created), ETagOf(read));
        Assert.Equal("Read orders", (await read.ExpectAsync(HttpStatusCode.OK)).GetProperty("description").GetString());

        var client = await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = Unique.Name("m"), grant_types = new[] { "client_credentials" }, scope = name })))
            .ExpectAsync(HttpStatusCode.Created);
        var token = await TokenAsync(server, client.GetProperty("client_id").GetString()!, client.GetProperty("client_secret").GetString()!, name);
        await using var api = await TestApi.StartAsync(server, audience);
        Assert.Equal(HttpStatusCode.OK, (await api.CallAsync(token)).StatusCode);
    }

    [SkippableFact]
    public async Task Scopes_are_listed_and_searched_a_page_at_a_time()
    {
        var admin = await AdminAsync(server);
        var tag = Unique.Name("inv");
        foreach (var i in new[] { 1, 2, 3 })
        {
            await (await admin.PostJsonAsync(ScopesUrl, Json(new { name = $"{tag}.{i}" }))).ExpectAsync(HttpStatusCode.Created);
        }

        var first = await admin.GetJsonAsync($"{ScopesUrl}?search={tag}&page_size=2");
        var second = await admin.GetJsonAsync($"{ScopesUrl}?search={tag}&page_size=2&page=2");

        Assert.Equal(3, first.GetProperty("total").GetInt32());
        Assert.Equal([$"{tag}.1", $"{tag}.2", $"{tag}.3"], first.GetProperty("items").EnumerateArray().Concat(second.GetProperty("items").EnumerateArray())
            .Select(s => s.GetProperty("name").GetString()));
        Assert.Contains((await admin.GetJsonAsync($"{ScopesUrl}?search=admin")).GetProperty("items").EnumerateArray(), s => s.GetProperty("name").GetString() == "admin");
    }

    [SkippableFact]
    public async Task A_scope_page_or_page_size_that_is_not_a_whole_number_is_refused_naming_the_parameter() =>
        await AssertPagingThatIsNotAWholeNumberIsRefusedNamingTheParameterAsync(await AdminAsync(server), ScopesUrl);

    [SkippableFact]
    public async Task A_scope_page_past_the_end_is_empty_however_large_its_number()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("far");
        await (await admin.PostJsonAsync(ScopesUrl, Json(new { name }))).ExpectAsync(HttpStatusCode.Created);

        await AssertPagesPastTheEndAreEmptyAsync(admin, ScopesUrl, name);
    }

    [SkippableTheory]
    [InlineData("""{"name":"has space"}""", "name")]
    [InlineData("""{"name":"openid"}""", "name")]
    [InlineData("""{}""", "name")]
    [InlineData("""{"name":"NAME","resources":["not absolute"]}""", "resources[0]")]
    [InlineData("""{"name":"NAME","resources":["https://api.example.com/\u0007"]}""", "resources[0]")]
    [InlineData("""{"name":"NAME","colour":"blue"}""", "colour")]
    [InlineData("""{"name":"NAME","display_name":"Orders \u202Esredro"}""", "display_name")]
    [InlineData("""{"name":"NAME","display_name":"Orders\u061C"}""", "display_name")]
    [InlineData("""{"name":"NAME","display_name":"Orders\u0000"}""", "display_name")]
    [InlineData("""{"name":"NAME","display_name":"Orders\nline"}""", "display_name")]
    [InlineData("""{"name":"NAME","description":"Reads \u2067orders"}""", "description")]
    [InlineData("""{"name":"NAME","description":"Reads\u009Borders"}""", "description")]
    [InlineData("""{"name":"NAME","description":"Reads\u001B[31morders"}""", "description")]
    [InlineData("""{"name":"NAME","resources":"https://api.example.com"}""", "resources")]
    public async Task An_invalid_scope_is_refused_naming_the_field(string json, string field)
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("bad");

        var response = await admin.PostJsonAsync(ScopesUrl, json.Replace("NAME", name));

        await response.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", field);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ScopesUrl, name))).StatusCode);
    }

    /// <summary>
    /// A token whose scopes name no API has the issuer as its audience: an API registered under the issuer's address
    /// would take every such token, so no scope's resource may be it (with or without the trailing '/').
    /// </summary>
    [SkippableFact]
    public async Task A_scope_whose_resource_is_the_issuer_is_refused()
    {
        var admin = await AdminAsync(server);
        var issuer = await server.EndpointAsync("issuer");

        foreach (var resource in new[] { issuer, issuer.TrimEnd('/') })
        {
            var name = Unique.Name("issuer");
            var response = await admin.PostJsonAsync(ScopesUrl, Json(new { name, resources = new[] { "https://api.example.com/", resource } }));

            await response.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "resources[1]");
            Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ScopesUrl, name))).StatusCode);
        }
    }

    /// <summary>A description is typed in a text area: its line breaks are kept (the other control characters are refused).</summary>
    [SkippableFact]
    public async Task A_scope_description_may_have_line_breaks()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("lines");

        var created = await (await admin.PostJsonAsync(ScopesUrl, Json(new { name, description = "Reads orders.\r\nWrites none." }))).ExpectAsync(HttpStatusCode.Created);

        Assert.Equal("Reads orders.\r\nWrites none.", created.GetProperty("description").GetString());
    }

    [SkippableFact]
    public async Task A_scope_name_in_use_is_a_conflict_and_an_unknown_one_is_not_found()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("dup");
        await (await admin.PostJsonAsync(ScopesUrl, Json(new { name }))).ExpectAsync(HttpStatusCode.Created);

        await (await admin.PostJsonAsync(ScopesUrl, Json(new { name }))).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
        var missing = Path(ScopesUrl, Unique.Name("missing"));
        await (await admin.GetAsync(missing)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.PutJsonAsync(missing, "{}")).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.DeleteAsync(missing, null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
    }

    [SkippableFact]
    public async Task A_scope_update_needs_the_current_etag_and_a_stale_one_loses_nothing()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("reports");
        var created = await admin.PostJsonAsync(ScopesUrl, Json(new { name, resources = new[] { "https://one.example.com" } }));
        await created.ExpectAsync(HttpStatusCode.Created);

        var updated = await admin.PutJsonAsync(Path(ScopesUrl, name), Json(new { display_name = "Reports", resources = new[] { "https://two.example.com" } }), ETagOf(created));
        var body = await updated.ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(["https://two.example.com"], AdminClientApiTests<TFixture>.Strings(body, "resources"));

        await (await admin.PutJsonAsync(Path(ScopesUrl, name), Json(new { resources = new[] { "https://three.example.com" } }), ETagOf(created)))
            .ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        await (await admin.PutJsonAsync(Path(ScopesUrl, name), Json(new { name = Unique.Name("renamed") })))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "name");
        var now = await admin.GetJsonAsync(Path(ScopesUrl, name));
        Assert.Equal("Reports", now.GetProperty("display_name").GetString());
        Assert.Equal(["https://two.example.com"], AdminClientApiTests<TFixture>.Strings(now, "resources"));
    }

    [SkippableFact]
    public async Task A_scope_still_given_to_a_client_cannot_be_deleted_until_it_is_removed_from_it()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("used");
        var created = await admin.PostJsonAsync(ScopesUrl, Json(new { name }));
        await created.ExpectAsync(HttpStatusCode.Created);
        var clientId = Unique.Name("user");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, scope = name })))
            .ExpectAsync(HttpStatusCode.Created);

        var refused = await admin.DeleteAsync(Path(ScopesUrl, name), null);
        var error = await refused.ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
        Assert.Contains(clientId, error.GetProperty("error_description").GetString());
        await (await admin.DeleteAsync(Path(ScopesUrl, name), "\"stale\"")).ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");

        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(new { grant_types = new[] { "client_credentials" } }))).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync(Path(ScopesUrl, name), ETagOf(created))).StatusCode);
        await (await admin.GetAsync(Path(ScopesUrl, name))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(["scope.deleted", "scope.created"], (await AuditForAsync(admin, "scope", name)).EnumerateArray().Select(e => e.GetProperty("action").GetString()));
    }

    /// <summary>
    /// A token request validates its scopes, then reads their resources for the audience: a scope deleted by another
    /// request in between must not vanish halfway, leaving a token with the scope but without its audience. The shared
    /// cache is warm first, as under load, so the request's scope is a copy OpenIddict's own per-request cache never saw.
    /// </summary>
    [SkippableFact]
    public async Task A_request_that_found_its_scope_keeps_it_and_its_audience_when_another_request_deletes_it()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("going");
        var audience = TestApi.NewAudience();
        await (await admin.PostJsonAsync(ScopesUrl, Json(new { name, resources = new[] { audience } }))).ExpectAsync(HttpStatusCode.Created);
        await using (var earlier = server.Factory.Services.CreateAsyncScope())
        {
            Assert.NotNull(await earlier.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>().FindByNameAsync(name));
        }

        await using var request = server.Factory.Services.CreateAsyncScope();
        var scopes = request.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
        var found = await scopes.FindByNameAsync(name);
        Assert.NotNull(found);

        await (await admin.DeleteAsync(Path(ScopesUrl, name), null)).ExpectAsync(HttpStatusCode.NoContent);

        Assert.Same(found, await scopes.FindByNameAsync(name));
        Assert.Same(found, await scopes.FindByIdAsync((await scopes.GetIdAsync(found!))!));
        Assert.Equal([audience], await scopes.ListResourcesAsync([name]).ToListAsync());
        await using var next = server.Factory.Services.CreateAsyncScope();
        Assert.Null(await next.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>().FindByNameAsync(name));
    }

    [SkippableFact]
    public async Task The_admin_scope_is_built_in_with_the_admin_audience_and_cannot_be_changed_or_deleted()
    {
        var admin = await AdminAsync(server);

        var scope = await admin.GetJsonAsync(Path(ScopesUrl, "admin"));

        Assert.Equal(["urn:identity-server:admin"], AdminClientApiTests<TFixture>.Strings(scope, "resources"));
        await (await admin.PutJsonAsync(Path(ScopesUrl, "admin"), Json(new { resources = new[] { "https://elsewhere.example.com" } })))
            .ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
        await (await admin.DeleteAsync(Path(ScopesUrl, "admin"), null)).ExpectErrorAsync(HttpStatusCode.Conflict, "conflict");
    }
}

public sealed class SqliteAdminScopeApiTests(SqliteServerFixture server)
    : AdminScopeApiTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminScopeApiTests(PostgreSqlServerFixture server)
    : AdminScopeApiTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
