using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>Signing keys through the admin API: the same access rules as the rest of it, audited, and a rotation takes effect everywhere at once.</summary>
public abstract class AdminKeysTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_rotation_through_the_api_is_audited_and_admin_tokens_signed_with_the_new_key_are_accepted()
    {
        var admin = await AdminAsync(server);

        var rotated = await admin.PostAsync("/api/admin/keys/rotate", null);
        Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
        var kid = (await rotated.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("kid").GetString();

        var fresh = await MachineTokenAsync(server, "admin");
        Assert.Equal(kid, Jwt.Header(fresh).GetProperty("kid").GetString());
        Assert.Equal(HttpStatusCode.OK, (await WithBearer(server, fresh).GetAsync(ClientsUrl)).StatusCode);

        var audit = await (await admin.GetAsync($"{AuditUrl}?target_type=key&target_id={kid}")).Content.ReadFromJsonAsync<JsonElement>();
        Assert.Contains(audit.GetProperty("items").EnumerateArray(), e => e.GetProperty("action").GetString() == "key.rotated");
    }

    [SkippableFact]
    public async Task A_token_without_the_admin_scope_can_neither_list_nor_rotate_keys()
    {
        var other = WithBearer(server, await MachineTokenAsync(server, await server.CreateScopeAsync("https://other.test")));
        Assert.Equal(HttpStatusCode.Forbidden, (await other.GetAsync("/api/admin/keys")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await other.PostAsync("/api/admin/keys/rotate", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.CreateClient().GetAsync("/api/admin/keys")).StatusCode);
    }
}

public sealed class SqliteAdminKeysTests(SqliteServerFixture server) : AdminKeysTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminKeysTests(PostgreSqlServerFixture server) : AdminKeysTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
