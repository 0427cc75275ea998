using System.Globalization;
using System.Net;
using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Tests.Performance;

/// <summary>
/// New token entries are written by one group-commit writer and clients, scopes and secret checks are served from
/// memory: none of that may lose an entry, accept a wrong secret, or keep serving a client or scope after it changed.
/// </summary>
public abstract class TokenWriteTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private async Task<string> TokenAsync(TestClient client)
    {
        var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!,
            tokenEndpoint: await server.EndpointAsync("token_endpoint"));
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        return json.GetProperty("access_token").GetString()!;
    }

    [SkippableFact]
    public async Task Every_token_of_many_concurrent_requests_has_its_entry_and_can_be_revoked()
    {
        var client = await server.CreateConfidentialClientAsync();
        const int count = 64;

        var tokens = await Task.WhenAll(Enumerable.Range(0, count).Select(_ => TokenAsync(client)));

        Assert.Equal(count, tokens.Distinct().Count());

        // Each entry of a batch holds its own token's values, not another row's of the same statement.
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
            var stored = new Dictionary<string, long?>();
            await foreach (var entry in manager.FindBySubjectAsync(client.ClientId))
            {
                stored.Add((await manager.GetIdAsync(entry))!, (await manager.GetExpirationDateAsync(entry))?.ToUnixTimeSeconds());
            }

            var issued = tokens.Select(Jwt.Payload).ToDictionary(p => p.GetProperty("oi_tkn_id").GetString()!, p => (long?)p.GetProperty("exp").GetInt64());
            Assert.Equal(issued.OrderBy(p => p.Key), stored.OrderBy(p => p.Key));
        }

        var active = await Task.WhenAll(tokens.Select(t => OAuth.IntrospectAsync(server, client, t)));
        Assert.All(active, json => Assert.True(json.GetProperty("active").GetBoolean(), json.ToString()));

        var revocations = await Task.WhenAll(tokens.Select(t =>
            OAuth.PostFormAsync(server, "revocation_endpoint", new Dictionary<string, string> { ["token"] = t }, client)));
        Assert.All(revocations, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));

        var afterwards = await Task.WhenAll(tokens.Select(t => OAuth.IntrospectAsync(server, client, t)));
        Assert.All(afterwards, json => Assert.False(json.GetProperty("active").GetBoolean(), json.ToString()));
    }

    /// <summary>
    /// A client deleted after its token request was validated but before the entry was written: the insert fails on
    /// the foreign key. That is a race the request lost, answered <c>invalid_grant</c>, not an outage (503); the
    /// writer goes on. A trigger deletes the client just before its entry is inserted, so the race happens every time
    /// (the failed insert then takes the delete back with it).
    /// </summary>
    [SkippableFact]
    public async Task A_client_deleted_while_its_token_entry_is_written_gets_invalid_grant_not_an_outage()
    {
        var doomed = await server.CreateConfidentialClientAsync();
        var bystander = await server.CreateConfidentialClientAsync();
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var applicationId = await applications.GetIdAsync((await applications.FindByClientIdAsync(doomed.ClientId))!);
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var trigger = Unique.Name("delete_client").Replace('-', '_');
        string[] create = server.Provider == DatabaseProvider.PostgreSql
            ? [
                $$"""CREATE FUNCTION {{trigger}}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN IF NEW."ApplicationId" = '{{applicationId}}' THEN DELETE FROM "OpenIddictApplications" WHERE "Id" = NEW."ApplicationId"; END IF; RETURN NEW; END $f$""",
                $$"""CREATE TRIGGER {{trigger}} BEFORE INSERT ON "OpenIddictTokens" FOR EACH ROW EXECUTE FUNCTION {{trigger}}()""",
            ]
            : [$$"""CREATE TRIGGER {{trigger}} BEFORE INSERT ON OpenIddictTokens WHEN NEW.ApplicationId = '{{applicationId}}' BEGIN DELETE FROM OpenIddictApplications WHERE Id = NEW.ApplicationId; END"""];
        foreach (var sql in create)
        {
            await db.Database.ExecuteSqlRawAsync(sql);
        }

        try
        {
            var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), doomed.ClientId, doomed.ClientSecret!,
                tokenEndpoint: await server.EndpointAsync("token_endpoint"));

            var json = await OAuth.ReadJsonAsync(response);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {json}");
            Assert.Equal("invalid_grant", json.GetProperty("error").GetString());
            Assert.False(json.TryGetProperty("access_token", out _));
        }
        finally
        {
            await db.Database.ExecuteSqlRawAsync(server.Provider == DatabaseProvider.PostgreSql
                ? $"""DROP TRIGGER {trigger} ON "OpenIddictTokens"; DROP FUNCTION {trigger}()"""
                : $"DROP TRIGGER {trigger}");
        }

        // The failed insert was rolled back with the trigger's delete, and the writer goes on for everyone.
        Assert.False(string.IsNullOrEmpty(await TokenAsync(doomed)));
        Assert.False(string.IsNullOrEmpty(await TokenAsync(bystander)));
    }

    /// <summary>
    /// The writer inserts rows itself (not through SaveChanges): what it stored must read back through OpenIddict's
    /// store as what the token says, with the dates in the provider's format (expiry and pruning compare them).
    /// </summary>
    [SkippableFact]
    public async Task A_written_entry_reads_back_as_the_token_it_was_issued_for()
    {
        var client = await server.CreateConfidentialClientAsync();
        var payload = Jwt.Payload(await TokenAsync(client));

        await using var scope = server.Factory.Services.CreateAsyncScope();
        var tokens = scope.ServiceProvider.GetRequiredService<IOpenIddictTokenManager>();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var entries = new List<object>();
        await foreach (var entry in tokens.FindBySubjectAsync(client.ClientId))
        {
            entries.Add(entry);
        }

        var stored = Assert.Single(entries);
        Assert.Equal(await applications.GetIdAsync((await applications.FindByClientIdAsync(client.ClientId))!), await tokens.GetApplicationIdAsync(stored));
        Assert.Null(await tokens.GetAuthorizationIdAsync(stored));
        Assert.Equal(OpenIddictConstants.Statuses.Valid, await tokens.GetStatusAsync(stored));
        Assert.Equal(OpenIddictConstants.TokenTypeIdentifiers.AccessToken, await tokens.GetTypeAsync(stored));
        Assert.Equal(payload.GetProperty("iat").GetInt64(), (await tokens.GetCreationDateAsync(stored))?.ToUnixTimeSeconds());
        Assert.Equal(payload.GetProperty("exp").GetInt64(), (await tokens.GetExpirationDateAsync(stored))?.ToUnixTimeSeconds());
        Assert.Null(await tokens.GetRedemptionDateAsync(stored));
        Assert.Equal(payload.GetProperty("oi_tkn_id").GetString(), await tokens.GetIdAsync(stored));
    }

    /// <summary>
    /// Token entries and authorizations get ids of UUID version 7, whose text sorts by creation time, so that each
    /// insert lands at the end of the primary key's index instead of on a random page of it.
    /// </summary>
    [SkippableFact]
    public async Task New_token_entries_and_authorizations_get_ids_that_sort_by_creation_time()
    {
        var machine = await server.CreateConfidentialClientAsync();
        var issued = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            issued.Add(Jwt.Payload(await TokenAsync(machine)).GetProperty("oi_tkn_id").GetString()!);
        }

        var app = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), app, user, "openid offline_access");
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var userTokens = await db.Set<OpenIddictEntityFrameworkCoreToken>().Where(t => t.Subject == user.Id).Select(t => t.Id!).ToListAsync();
        var authorizations = await db.Set<OpenIddictEntityFrameworkCoreAuthorization>().Where(a => a.Subject == user.Id).Select(a => a.Id!).ToListAsync();

        Assert.Equal(3, userTokens.Count); // the code, the access token and the refresh token
        Assert.Equal(2, authorizations.Count); // the remembered consent and the sign-in's grant
        Assert.All([.. issued, .. userTokens, .. authorizations], id => Assert.Equal(7, Guid.Parse(id).Version));
        var milliseconds = issued.Select(id => long.Parse(id.Replace("-", "")[..12], NumberStyles.HexNumber)).ToList();
        Assert.Equal(milliseconds.Order(), milliseconds);
    }

    /// <summary>
    /// Sign-ins at once: each one's grant (an ad-hoc authorization, written by the group-commit writer with the
    /// code, several in one batch) reads back through OpenIddict with its user, client, scopes, type, status and date,
    /// and is the one its code, access and refresh tokens name; the remembered consent is one permanent authorization.
    /// </summary>
    [SkippableFact]
    public async Task Each_sign_ins_grant_is_written_with_its_code_and_reads_back_as_made()
    {
        var app = await server.CreatePublicClientAsync();
        var user = await server.CreateUserAsync();
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), app, user, "openid offline_access"); // the consent, first
        await Task.WhenAll(Enumerable.Range(0, 6).Select(_ =>
            OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), app, user, "openid offline_access")));

        await using var scope = server.Factory.Services.CreateAsyncScope();
        var authorizations = scope.ServiceProvider.GetRequiredService<IOpenIddictAuthorizationManager>();
        var applicationId = await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().GetIdAsync(
            (await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().FindByClientIdAsync(app.ClientId))!);
        var found = await authorizations.FindBySubjectAsync(user.Id).ToListAsync();
        var grants = new List<string>();
        foreach (var authorization in found)
        {
            Assert.Equal(applicationId, await authorizations.GetApplicationIdAsync(authorization));
            Assert.Equal(OpenIddictConstants.Statuses.Valid, await authorizations.GetStatusAsync(authorization));
            Assert.Equal(["offline_access", "openid"], (await authorizations.GetScopesAsync(authorization)).Order());
            Assert.InRange((await authorizations.GetCreationDateAsync(authorization))!.Value, before, DateTimeOffset.UtcNow.AddSeconds(1));
            if (await authorizations.GetTypeAsync(authorization) == OpenIddictConstants.AuthorizationTypes.AdHoc)
            {
                grants.Add((await authorizations.GetIdAsync(authorization))!);
            }
        }

        Assert.Equal(8, found.Count); // seven grants and the consent
        Assert.Equal(7, grants.Distinct().Count());
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var tokensByGrant = await db.Set<OpenIddictEntityFrameworkCoreToken>().Where(t => t.Subject == user.Id)
            .GroupBy(t => EF.Property<string>(t, "AuthorizationId")).Select(g => new { Grant = g.Key, Count = g.Count() }).ToListAsync();
        Assert.Equal(grants.Order(), tokensByGrant.Select(g => g.Grant).Order());
        Assert.All(tokensByGrant, g => Assert.Equal(3, g.Count)); // the code, the access token and the refresh token
    }

    /// <summary>
    /// A client_id or scope with a NUL (a query string's <c>%00</c>, an HTTP Basic header) is not found, without a
    /// query: PostgreSQL would refuse it with an error, and an error on the use Npgsql prepares a statement on breaks
    /// that statement for the next request on the same connection (npgsql/npgsql#6391).
    /// </summary>
    [SkippableFact]
    public async Task A_client_id_or_scope_name_with_a_NUL_is_not_found_and_the_client_is_refused()
    {
        var client = await server.CreateConfidentialClientAsync();
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();

        Assert.Null(await applications.FindByClientIdAsync(client.ClientId + "\0"));
        Assert.Null(await scopes.FindByNameAsync("api\0"));
        Assert.NotNull(await applications.FindByClientIdAsync(client.ClientId));

        var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId + "\0", client.ClientSecret!,
            tokenEndpoint: await server.EndpointAsync("token_endpoint"));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task A_wrong_secret_is_refused_right_after_the_right_one_was_accepted()
    {
        var client = await server.CreateConfidentialClientAsync();
        await TokenAsync(client);

        var wrong = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret + "x",
            tokenEndpoint: await server.EndpointAsync("token_endpoint"));

        await AssertInvalidClientAsync(wrong);
    }

    private async Task AssertOnlyTheNewSecretIsAcceptedAsync(TestClient client, string newSecret)
    {
        var old = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!,
            tokenEndpoint: await server.EndpointAsync("token_endpoint"));
        await AssertInvalidClientAsync(old);
        await TokenAsync(client with { ClientSecret = newSecret });
    }

    [SkippableFact]
    public async Task After_a_secret_changes_the_old_one_is_refused_at_once_and_the_new_one_accepted()
    {
        var client = await server.CreateConfidentialClientAsync();
        await TokenAsync(client);
        var newSecret = Unique.Secret();

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().SetClientSecretAsync(client.ClientId, newSecret);
        }

        await AssertOnlyTheNewSecretIsAcceptedAsync(client, newSecret);
    }

    /// <summary>
    /// Admin changes run in a transaction with their audit entry. A lookup between the change and the commit reads
    /// the old, committed row, and the cache must not keep serving it once the change is committed.
    /// </summary>
    [SkippableFact]
    public async Task A_secret_changed_in_a_transaction_is_the_only_one_accepted_once_committed()
    {
        var client = await server.CreateConfidentialClientAsync();
        var newSecret = Unique.Secret();
        await using var admin = server.Factory.Services.CreateAsyncScope();
        var db = admin.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        var applications = admin.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();

        await using (var transaction = await db.Database.BeginTransactionAsync())
        {
            await applications.SetClientSecretAsync(client.ClientId, newSecret);

            // Another request looks the client up now: it reads the row as committed, with the old secret.
            await using (var other = server.Factory.Services.CreateAsyncScope())
            {
                Assert.NotNull(await other.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().FindByClientIdAsync(client.ClientId));
            }

            await transaction.CommitAsync();
        }

        await AssertOnlyTheNewSecretIsAcceptedAsync(client, newSecret);
    }

    [SkippableFact]
    public async Task A_deleted_client_gets_no_more_tokens()
    {
        var client = await server.CreateConfidentialClientAsync();
        await TokenAsync(client);

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
            await applications.DeleteAsync((await applications.FindByClientIdAsync(client.ClientId))!);
        }

        var refused = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!,
            tokenEndpoint: await server.EndpointAsync("token_endpoint"));
        await AssertInvalidClientAsync(refused);
    }

    [SkippableFact]
    public async Task A_scope_s_changed_resources_are_the_audience_of_the_next_token()
    {
        var scopeName = await server.CreateScopeAsync("https://before.example");
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scopeName);
        Assert.Equal(["https://before.example"], Jwt.Strings(Jwt.Payload(await ScopedTokenAsync(client, scopeName)).GetProperty("aud")));

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
            var entity = await scopes.FindByNameAsync(scopeName);
            var descriptor = new OpenIddictScopeDescriptor();
            await scopes.PopulateAsync(descriptor, entity!);
            descriptor.Resources.Clear();
            descriptor.Resources.Add("https://after.example");
            await scopes.UpdateAsync(entity!, descriptor);
        }

        Assert.Equal(["https://after.example"], Jwt.Strings(Jwt.Payload(await ScopedTokenAsync(client, scopeName)).GetProperty("aud")));
    }

    [SkippableFact]
    public async Task A_scope_name_looked_up_before_it_existed_is_found_once_created_or_renamed_to()
    {
        var created = Unique.Name("scope");
        var renamedTo = Unique.Name("scope");
        Assert.Null(await FindScopeAsync(created));
        Assert.Null(await FindScopeAsync(renamedTo));

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
            await scopes.CreateAsync(new OpenIddictScopeDescriptor { Name = created });
        }

        Assert.NotNull(await FindScopeAsync(created));

        var existing = await server.CreateScopeAsync("https://rename.example");
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
            var entity = await scopes.FindByNameAsync(existing);
            var descriptor = new OpenIddictScopeDescriptor();
            await scopes.PopulateAsync(descriptor, entity!);
            descriptor.Name = renamedTo;
            await scopes.UpdateAsync(entity!, descriptor);
        }

        Assert.NotNull(await FindScopeAsync(renamedTo));
        Assert.Null(await FindScopeAsync(existing));
    }

    private async Task<object?> FindScopeAsync(string name)
    {
        await using var scope = server.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>().FindByNameAsync(name);
    }

    /// <summary>With HTTP Basic client authentication a refused client gets 401 (RFC 6749 section 5.2).</summary>
    private static async Task AssertInvalidClientAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    private async Task<string> ScopedTokenAsync(TestClient client, string scope)
    {
        var response = await HttpProtocol.ClientCredentialsAsync(server.CreateClient(), client.ClientId, client.ClientSecret!, scope,
            await server.EndpointAsync("token_endpoint"));
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        return json.GetProperty("access_token").GetString()!;
    }
}

public sealed class SqliteTokenWriteTests(SqliteServerFixture server) : TokenWriteTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlTokenWriteTests(PostgreSqlServerFixture server) : TokenWriteTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
