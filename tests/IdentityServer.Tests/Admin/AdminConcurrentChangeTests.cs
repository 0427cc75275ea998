using System.Net;
using System.Net.Http.Headers;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// Admin changes that meet other writes of the same entry at the same moment. Each race is made on purpose: the
/// admin change runs on a second instance that, just before it writes, starts the other request on the first
/// instance and waits until that request is done or waits for a lock the change holds.
/// </summary>
public abstract class AdminConcurrentChangeTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    /// <summary>
    /// A client deleted while it is getting tokens: its token entry written after the deletion listed the client's
    /// entries, but before the client's row went, made the deletion fail on the entry's foreign key (PostgreSQL: 409,
    /// and the client kept working). The deletion now holds the client's row first, so the entry waits for it and
    /// fails as written for a deleted client: the deletion succeeds, the token request gets an OAuth error (not a
    /// 500), and nothing issued to the client is left.
    /// </summary>
    [SkippableFact]
    public async Task A_client_getting_tokens_is_deleted_and_the_token_request_racing_the_deletion_fails_cleanly()
    {
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        var earlier = await TokenAsync(server, client.ClientId, client.ClientSecret!, scope); // the first instance now has the client cached
        var applicationId = await ApplicationIdAsync(client.ClientId);

        Task<HttpResponseMessage>? racing = null;
        await using var deleting = server.InstanceThatStepsInBeforeSaving<OpenIddictEntityFrameworkCoreApplication>(e => e.State == EntityState.Deleted, async () =>
        {
            racing = ClientCredentialsAsync(server, client.ClientId, client.ClientSecret!, scope);
            await server.UntilDoneOrWaitingForALockAsync(racing, "INSERT INTO \"OpenIddictTokens\"");
        });

        var deleted = await (await AdminOnAsync(deleting)).DeleteAsync(Path(ClientsUrl, client.ClientId), null);

        await deleted.ExpectAsync(HttpStatusCode.NoContent);
        Assert.NotNull(racing);
        var raced = await racing;
        var error = (await OAuth.ReadJsonAsync(raced)).GetProperty("error").GetString();
        Assert.True(raced.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.Unauthorized, $"{(int)raced.StatusCode} {error}");
        Assert.Contains(error, new[] { "invalid_grant", "invalid_client" });
        await using (var check = server.Factory.Services.CreateAsyncScope())
        {
            var db = check.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            Assert.Equal(0, await db.Set<OpenIddictEntityFrameworkCoreToken>().CountAsync(t => EF.Property<string>(t, "ApplicationId") == applicationId));
            var tokens = check.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
            Assert.Null(await tokens.FindByIdAsync(Jwt.Payload(earlier).GetProperty("oi_tkn_id").GetString()!));
        }

        // The first instance may still have the client cached (Performance:EntityCacheLifetime), but issues nothing for it.
        var after = await ClientCredentialsAsync(server, client.ClientId, client.ClientSecret!, scope);
        Assert.True(after.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.Unauthorized, $"{(int)after.StatusCode}");
    }

    /// <summary>
    /// Two replaces of one client without If-Match at the same moment: both are made, one after the other, the
    /// second on top of the first. Both used to read the same version and the second failed OpenIddict's concurrency
    /// check, answered 412 although it sent no condition (RFC 9110 section 15.5.13).
    /// </summary>
    [SkippableFact]
    public async Task Two_replaces_without_if_match_at_the_same_moment_are_both_made()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("spa");
        await (await admin.PostJsonAsync(ClientsUrl, Json(AdminClientApiTests<TFixture>.Spa(clientId, "https://one.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);
        await admin.GetJsonAsync(Path(ClientsUrl, clientId)); // cached by the first instance, as under load

        Task<HttpResponseMessage>? other = null;
        await using var editing = server.InstanceThatStepsInBeforeSaving<OpenIddictEntityFrameworkCoreApplication>(e => e.State == EntityState.Modified, async () =>
        {
            other = admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(AdminClientApiTests<TFixture>.Spa(clientId, "https://other.example.com/cb")));
            await server.UntilDoneOrWaitingForALockAsync(other, "\"OpenIddictApplications\"");
        });

        var mine = await (await AdminOnAsync(editing)).PutJsonAsync(Path(ClientsUrl, clientId),
            Json(AdminClientApiTests<TFixture>.Spa(clientId, "https://mine.example.com/cb")));

        await mine.ExpectAsync(HttpStatusCode.OK);
        Assert.NotNull(other);
        await (await other).ExpectAsync(HttpStatusCode.OK);
        var now = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal(["https://other.example.com/cb"], AdminClientApiTests<TFixture>.Strings(now, "redirect_uris"));
        var audited = (await AuditForAsync(admin, "client", clientId)).EnumerateArray().Select(e => e.GetProperty("action").GetString()).ToList();
        Assert.Equal(["client.updated", "client.updated", "client.created"], audited);
    }

    /// <summary>
    /// Two secret rotations of one client without If-Match at the same moment: both are made, one after the other;
    /// the secret of the one made last works and the other does not.
    /// </summary>
    [SkippableFact]
    public async Task Two_secret_rotations_without_if_match_at_the_same_moment_are_both_made()
    {
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        await TokenAsync(server, client.ClientId, client.ClientSecret!, scope); // cached by the first instance, as under load
        var secretUrl = Path(ClientsUrl, client.ClientId) + "/secret";

        Task<HttpResponseMessage>? other = null;
        await using var rotating = server.InstanceThatStepsInBeforeSaving<OpenIddictEntityFrameworkCoreApplication>(e => e.State == EntityState.Modified, async () =>
        {
            other = admin.PostAsync(secretUrl, null);
            await server.UntilDoneOrWaitingForALockAsync(other, "\"OpenIddictApplications\"");
        });

        var mine = await (await AdminOnAsync(rotating)).PostAsync(secretUrl, null);

        var mySecret = (await mine.ExpectAsync(HttpStatusCode.OK)).GetProperty("client_secret").GetString()!;
        Assert.NotNull(other);
        var lastSecret = (await (await other).ExpectAsync(HttpStatusCode.OK)).GetProperty("client_secret").GetString()!;
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, client.ClientId, lastSecret, scope)));
        Assert.Equal(HttpStatusCode.Unauthorized, (await ClientCredentialsAsync(server, client.ClientId, mySecret, scope)).StatusCode);
    }

    /// <summary>As for clients, two replaces of one scope without If-Match at the same moment are both made.</summary>
    [SkippableFact]
    public async Task Two_scope_replaces_without_if_match_at_the_same_moment_are_both_made()
    {
        var admin = await AdminAsync(server);
        var name = Unique.Name("scope");
        await (await admin.PostJsonAsync(ScopesUrl, Json(new { name, display_name = "One" }))).ExpectAsync(HttpStatusCode.Created);
        await admin.GetJsonAsync(Path(ScopesUrl, name));

        Task<HttpResponseMessage>? other = null;
        await using var editing = server.InstanceThatStepsInBeforeSaving<OpenIddictEntityFrameworkCoreScope>(e => e.State == EntityState.Modified, async () =>
        {
            other = admin.PutJsonAsync(Path(ScopesUrl, name), Json(new { name, display_name = "Other" }));
            await server.UntilDoneOrWaitingForALockAsync(other, "\"OpenIddictScopes\"");
        });

        var mine = await (await AdminOnAsync(editing)).PutJsonAsync(Path(ScopesUrl, name), Json(new { name, display_name = "Mine" }));

        await mine.ExpectAsync(HttpStatusCode.OK);
        Assert.NotNull(other);
        await (await other).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("Other", (await admin.GetJsonAsync(Path(ScopesUrl, name))).GetProperty("display_name").GetString());
    }

    /// <summary>An admin API client of <paramref name="instance"/>, with a token of a new admin machine client.</summary>
    private async Task<HttpClient> AdminOnAsync(WebApplicationFactory<Program> instance)
    {
        var http = instance.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await MachineTokenAsync(server, "admin"));
        return http;
    }

    private async Task<string> ApplicationIdAsync(string clientId)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        return (await applications.GetIdAsync((await applications.FindByClientIdAsync(clientId))!))!;
    }
}

public sealed class SqliteAdminConcurrentChangeTests(SqliteServerFixture server)
    : AdminConcurrentChangeTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminConcurrentChangeTests(PostgreSqlServerFixture server)
    : AdminConcurrentChangeTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
