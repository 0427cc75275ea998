using System.Net;
using System.Security.Cryptography;
using IdentityServer.Accounts;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// The <c>Seed</c> section, applied on every start: create or update, never delete, and refuse an invalid entry
/// with a message naming the entry and the field. Each test starts extra servers on the class's database with a
/// seed of uniquely named entries.
/// </summary>
public abstract class SeedingTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private sealed record Seeded(string ClientId, string Secret, string Scope, string Resource, string UserName, Dictionary<string, string?> Settings);

    /// <summary>A seed with one scope, one machine client of that scope, and one user.</summary>
    private static Seeded MachineSeed(string clientName = "Seeded machine")
    {
        var seeded = new Seeded(Unique.Name("seeded"), Unique.Secret(), Unique.Name("seed-scope"), $"https://{Unique.Name("api")}.test",
            Unique.Name("seed-user"), []);
        seeded.Settings["Seed:Scopes:0:name"] = seeded.Scope;
        seeded.Settings["Seed:Scopes:0:resources:0"] = seeded.Resource;
        seeded.Settings["Seed:Clients:0:client_id"] = seeded.ClientId;
        seeded.Settings["Seed:Clients:0:client_secret"] = seeded.Secret;
        seeded.Settings["Seed:Clients:0:client_name"] = clientName;
        seeded.Settings["Seed:Clients:0:grant_types:0"] = "client_credentials";
        seeded.Settings["Seed:Clients:0:scope"] = seeded.Scope;
        seeded.Settings["Seed:Users:0:user_name"] = seeded.UserName;
        seeded.Settings["Seed:Users:0:email"] = $"{seeded.UserName}@example.test";
        seeded.Settings["Seed:Users:0:password"] = "a-long-enough-password";
        seeded.Settings["Seed:Users:0:roles:0"] = "seeded-role";
        return seeded;
    }

    private static HttpClient Https(TestServerFactory factory) =>
        factory.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

    [SkippableFact]
    public async Task Seeding_twice_on_one_database_keeps_one_client_one_scope_and_one_user()
    {
        var seed = MachineSeed();
        await using (server.StartServer(seed.Settings))
        {
        }

        await using var second = server.StartServer(seed.Settings);

        await using var scope = second.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        var clientCount = 0;
        await foreach (var application in applications.ListAsync())
        {
            clientCount += await applications.GetClientIdAsync(application) == seed.ClientId ? 1 : 0;
        }

        var scopeCount = 0;
        await foreach (var stored in scopes.ListAsync())
        {
            scopeCount += await scopes.GetNameAsync(stored) == seed.Scope ? 1 : 0;
        }

        Assert.Equal(1, clientCount);
        Assert.Equal(1, scopeCount);
        Assert.Equal(1, await users.Users.CountAsync(u => u.UserName == seed.UserName));
        Assert.True(await users.IsInRoleAsync((await users.FindByNameAsync(seed.UserName))!, "seeded-role"));

        // And what was seeded works: the client gets a token for the seeded scope's resource.
        var response = await HttpProtocol.ClientCredentialsAsync(Https(second), seed.ClientId, seed.Secret, seed.Scope);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal(seed.Resource, Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("aud").GetString());
    }

    /// <summary>
    /// What the seed changes is in the audit log, by the actor "seed": what it creates, and an update only when it
    /// changed something (a start with the same seed records nothing), such as putting back a client or a role an
    /// administrator removed since.
    /// </summary>
    [SkippableFact]
    public async Task What_the_seed_changes_is_in_the_audit_log_and_a_start_that_changes_nothing_records_nothing()
    {
        var seed = MachineSeed("Before");
        await using (server.StartServer(seed.Settings))
        {
        }

        await using (server.StartServer(seed.Settings))
        {
        }

        seed.Settings["Seed:Clients:0:client_name"] = "After";
        await using var third = server.StartServer(seed.Settings);
        await using (var scope = third.Services.CreateAsyncScope())
        {
            var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
            await applications.DeleteAsync((await applications.FindByClientIdAsync(seed.ClientId))!);
            var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            var user = (await users.FindByNameAsync(seed.UserName))!;
            Assert.True((await users.RemoveFromRoleAsync(user, "seeded-role")).Succeeded);
        }

        await using var fourth = server.StartServer(seed.Settings);

        await using var check = fourth.Services.CreateAsyncScope();
        var db = check.ServiceProvider.GetRequiredService<IdentityServer.Data.ApplicationDbContext>();
        var userId = (await check.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>().FindByNameAsync(seed.UserName))!.Id;
        async Task<string[]> ActionsOnAsync(string target) => [.. (await db.AuditEntries.Where(e => e.TargetId == target).OrderBy(e => e.Id).ToListAsync())
            .Select(e => $"{e.Action} by {e.ActorType}")];

        Assert.Equal(["client.created by seed", "client.updated by seed", "client.created by seed"], await ActionsOnAsync(seed.ClientId));
        Assert.Equal(["scope.created by seed"], await ActionsOnAsync(seed.Scope));
        Assert.Equal(["user.created by seed", "user.updated by seed"], await ActionsOnAsync(userId));
        var renamed = await db.AuditEntries.Where(e => e.TargetId == seed.ClientId && e.Action == "client.updated").SingleAsync();
        Assert.Contains("Before", renamed.Before);
        Assert.Contains("After", renamed.After);
        Assert.DoesNotContain(seed.Secret, renamed.After);
    }

    [SkippableFact]
    public async Task A_changed_client_name_in_the_seed_updates_the_client_and_keeps_its_secret_working()
    {
        var seed = MachineSeed("Before");
        await using (server.StartServer(seed.Settings))
        {
        }

        seed.Settings["Seed:Clients:0:client_name"] = "After";
        await using var second = server.StartServer(seed.Settings);

        await using var scope = second.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var application = await applications.FindByClientIdAsync(seed.ClientId);
        Assert.NotNull(application);
        Assert.Equal("After", await applications.GetDisplayNameAsync(application));
        var response = await HttpProtocol.ClientCredentialsAsync(Https(second), seed.ClientId, seed.Secret, seed.Scope);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>A seeded client's secret is set when the seed creates it: rotated since (it leaked, say), a restart must not bring the old one back.</summary>
    [SkippableFact]
    public async Task A_seeded_client_s_rotated_secret_stays_rotated_after_a_restart()
    {
        var seed = MachineSeed();
        var rotated = Unique.Secret();
        await using (var first = server.StartServer(seed.Settings))
        {
            await using var scope = first.Services.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().SetClientSecretAsync(seed.ClientId, rotated);
        }

        await using var second = server.StartServer(seed.Settings);

        Assert.Equal(HttpStatusCode.Unauthorized, (await HttpProtocol.ClientCredentialsAsync(Https(second), seed.ClientId, seed.Secret, seed.Scope)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await HttpProtocol.ClientCredentialsAsync(Https(second), seed.ClientId, rotated, seed.Scope)).StatusCode);
    }

    /// <summary>
    /// A seeded client moved to its own keys, or made public, keeps no secret: the one the seed first gave it must not
    /// stay stored (it was kept like a rotated one) and still authenticate it.
    /// </summary>
    [SkippableTheory]
    [InlineData("private_key_jwt")]
    [InlineData("none")]
    public async Task A_seeded_client_moved_to_a_method_without_a_secret_keeps_none(string method)
    {
        var seed = MachineSeed();
        await using (server.StartServer(seed.Settings))
        {
        }

        seed.Settings.Remove("Seed:Clients:0:client_secret");
        seed.Settings["Seed:Clients:0:token_endpoint_auth_method"] = method;
        if (method == "private_key_jwt")
        {
            using var key = RSA.Create(2048);
            var parameters = key.ExportParameters(false);
            seed.Settings["Seed:Clients:0:jwks:keys:0:kty"] = "RSA";
            seed.Settings["Seed:Clients:0:jwks:keys:0:n"] = Base64UrlEncoder.Encode(parameters.Modulus!);
            seed.Settings["Seed:Clients:0:jwks:keys:0:e"] = Base64UrlEncoder.Encode(parameters.Exponent!);
        }
        else
        {
            seed.Settings["Seed:Clients:0:grant_types:0"] = "authorization_code";
            seed.Settings["Seed:Clients:0:redirect_uris:0"] = OAuth.AppRedirectUri;
        }

        await using var second = server.StartServer(seed.Settings);

        await using var scope = second.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, (await applications.FindByClientIdAsync(seed.ClientId))!);
        Assert.Null(descriptor.ClientSecret);
        // A public client may not use client_credentials at all (400 unauthorized_client).
        Assert.Equal(method == "none" ? HttpStatusCode.BadRequest : HttpStatusCode.Unauthorized,
            (await HttpProtocol.ClientCredentialsAsync(Https(second), seed.ClientId, seed.Secret)).StatusCode);
    }

    [SkippableFact]
    public async Task A_client_an_admin_created_survives_a_start_with_a_seed_that_does_not_name_it()
    {
        var adminMade = await server.CreateConfidentialClientAsync();

        await using var seeded = server.StartServer(MachineSeed().Settings);

        await using var scope = seeded.Services.CreateAsyncScope();
        Assert.NotNull(await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().FindByClientIdAsync(adminMade.ClientId));
        var response = await HttpProtocol.ClientCredentialsAsync(Https(seeded), adminMade.ClientId, adminMade.ClientSecret!);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>An invalid entry of each kind: the settings that make it, and what the message must name.</summary>
    public static readonly TheoryData<string> InvalidEntries =
    [
        "ftp redirect uri", "unknown field", "public client with client_credentials", "unknown scope", "too short password",
    ];

    private static (Dictionary<string, string?> Settings, string[] Named) InvalidEntry(string kind)
    {
        var clientId = Unique.Name("bad");
        var settings = new Dictionary<string, string?>
        {
            ["Seed:Clients:0:client_id"] = clientId,
            ["Seed:Clients:0:token_endpoint_auth_method"] = "none",
            ["Seed:Clients:0:grant_types:0"] = "authorization_code",
            ["Seed:Clients:0:redirect_uris:0"] = "https://app.test/callback",
            ["Seed:Clients:0:scope"] = "openid",
        };
        switch (kind)
        {
            case "ftp redirect uri":
                settings["Seed:Clients:0:redirect_uris:0"] = "ftp://x";
                return (settings, ["Seed:Clients:0", clientId, "redirect_uris[0]", "ftp://x"]);
            case "unknown field":
                settings["Seed:Clients:0:redirect_uri_typo"] = "https://app.test/callback";
                return (settings, ["Seed:Clients:0", "redirect_uri_typo"]);
            case "public client with client_credentials":
                settings["Seed:Clients:0:grant_types:1"] = "client_credentials";
                return (settings, ["Seed:Clients:0", clientId, "grant_types", "client_credentials"]);
            case "unknown scope":
                var scope = Unique.Name("no-such-scope");
                settings["Seed:Clients:0:scope"] = $"openid {scope}";
                return (settings, ["Seed:Clients:0", clientId, "scope", scope]);
            case "too short password":
                var userName = Unique.Name("short");
                settings["Seed:Users:0:user_name"] = userName;
                settings["Seed:Users:0:password"] = "short";
                return (settings, ["Seed:Users:0", "password"]);
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(InvalidEntries))]
    public async Task An_invalid_seed_entry_stops_the_start_with_a_message_naming_the_entry_and_the_field(string kind)
    {
        var (settings, named) = InvalidEntry(kind);

        var exception = Assert.ThrowsAny<Exception>(() => server.StartServer(settings));

        var message = string.Join(" | ", Chain(exception).Select(e => e.Message));
        var seedError = Chain(exception).FirstOrDefault(e => e.Message.Contains("Seed:", StringComparison.Ordinal));
        Assert.True(seedError is not null, $"No exception names the seed entry: {exception}");
        foreach (var part in named)
        {
            Assert.Contains(part, seedError.Message);
        }

        // Every entry is checked before anything is written: the valid client beside the bad user was not created either.
        await using var scope = server.Factory.Services.CreateAsyncScope();
        Assert.Null(await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>()
            .FindByClientIdAsync(settings["Seed:Clients:0:client_id"]!));
    }

    private static IEnumerable<Exception> Chain(Exception exception)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            yield return e;
            if (e is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions.SelectMany(Chain))
                {
                    yield return inner;
                }
            }
        }
    }
}

public sealed class SqliteSeedingTests(SqliteServerFixture server) : SeedingTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlSeedingTests(PostgreSqlServerFixture server) : SeedingTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
