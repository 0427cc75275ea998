using System.Net;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// The production bootstrap of the README: on an empty database the admin scope and role exist before the seed is
/// applied, so the seed (here as the configuration keys environment variables map to) can create the first admin
/// user and the first admin client; both work at once, and again after a restart.
/// </summary>
public abstract class AdminBootstrapTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task The_seeded_admin_client_calls_the_admin_api_and_the_seeded_admin_user_opens_the_admin_pages()
    {
        var token = await TokenAsync(server, AdminSeed.ClientId, AdminSeed.ClientSecret, "admin");
        await WithBearer(server, token).GetJsonAsync(ClientsUrl);

        var browser = await AdminPages.SignedInAsync(server, new TestUser("", AdminSeed.UserName, AdminSeed.Password, ""));
        var page = await browser.NavigateAsync(AdminPages.Url("/admin"));
        Assert.Equal(HttpStatusCode.OK, page.Status);
        Assert.Equal("/admin", page.Uri.AbsolutePath);
    }

    [SkippableFact]
    public async Task A_restart_keeps_the_admin_scope_role_and_seeded_entries_as_they_were()
    {
        await server.RestartAsync();

        var admin = WithBearer(server, await TokenAsync(server, AdminSeed.ClientId, AdminSeed.ClientSecret, "admin"));
        Assert.Equal(["urn:identity-server:admin"], AdminClientApiTests<TFixture>.Strings(await admin.GetJsonAsync(Path(ScopesUrl, "admin")), "resources"));
        Assert.Single((await admin.GetJsonAsync(RolesUrl)).EnumerateArray(), r => r.GetProperty("name").GetString() == "admin");
        var users = await admin.GetJsonAsync($"{UsersUrl}?search={AdminSeed.UserName}");
        Assert.Equal(["admin"], AdminClientApiTests<TFixture>.Strings(users.GetProperty("items")[0], "roles"));
    }
}

/// <summary>The bootstrap seed: one admin user and one admin machine client.</summary>
public static class AdminSeed
{
    public const string UserName = "first-admin";
    public const string Password = "vault-issued-bootstrap-secret";
    public const string ClientId = "ops-automation";
    public const string ClientSecret = "ops-automation-secret-from-a-vault";

    public static void Apply(Dictionary<string, string?> settings)
    {
        settings["Seed:Users:0:user_name"] = UserName;
        settings["Seed:Users:0:email"] = "admin@example.test";
        settings["Seed:Users:0:password"] = Password;
        settings["Seed:Users:0:email_verified"] = "true";
        settings["Seed:Users:0:roles:0"] = "admin";
        settings["Seed:Clients:0:client_id"] = ClientId;
        settings["Seed:Clients:0:client_secret"] = ClientSecret;
        settings["Seed:Clients:0:grant_types:0"] = "client_credentials";
        settings["Seed:Clients:0:scope"] = "admin";
    }
}

public sealed class SqliteAdminSeedFixture : SqliteServerFixture
{
    public SqliteAdminSeedFixture() => AdminSeed.Apply(Settings);
}

public sealed class PostgreSqlAdminSeedFixture : PostgreSqlServerFixture
{
    public PostgreSqlAdminSeedFixture() => AdminSeed.Apply(Settings);
}

public sealed class SqliteAdminBootstrapTests(SqliteAdminSeedFixture server)
    : AdminBootstrapTests<SqliteAdminSeedFixture>(server), IClassFixture<SqliteAdminSeedFixture>;

public sealed class PostgreSqlAdminBootstrapTests(PostgreSqlAdminSeedFixture server)
    : AdminBootstrapTests<PostgreSqlAdminSeedFixture>(server), IClassFixture<PostgreSqlAdminSeedFixture>;
