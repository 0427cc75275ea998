using System.Net.Http.Json;
using System.Text.Json;
using IdentityServer.Accounts;
using IdentityServer.Clients;
using IdentityServer.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc.Testing.Handlers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// One running server on one real database, shared by the tests of a class. Tests arrange their own data
/// (a client, a user, a scope of their own, with unique names) through the server's own services.
/// </summary>
public abstract class ServerFixture : IAsyncLifetime
{
    private TestServerFactory? _factory;
    private JsonElement? _discovery;

    public virtual TestServerFactory Factory => UnavailableReason is { } reason
        ? throw new SkipException(reason)
        : _factory ?? throw new InvalidOperationException("The fixture is not started.");

    /// <summary>Why this fixture's database cannot run here; its tests are then skipped with this message.</summary>
    public virtual string? UnavailableReason => null;

    public abstract DatabaseProvider Provider { get; }

    /// <summary>Settings every server of this fixture gets: the database, and whatever the test class adds.</summary>
    public Dictionary<string, string?> Settings { get; } = new();

    /// <summary>
    /// What the test changes in every server's services, when it must (see <see cref="TestServerFactory"/>): a way to
    /// reach another in-memory server, say.
    /// </summary>
    public Action<IServiceCollection>? TestServices { get; set; }

    protected abstract Task<string> CreateDatabaseAsync();

    protected virtual Task DropDatabaseAsync() => Task.CompletedTask;

    public async Task InitializeAsync()
    {
        if (UnavailableReason is not null)
        {
            return;
        }

        Settings["Database:Provider"] = Provider.ToString();
        Settings["ConnectionStrings:IdentityServer"] = await CreateDatabaseAsync();
        _factory = StartServer();
    }

    /// <summary>
    /// A new server on the same database (a restart, or a second instance), in <paramref name="environment"/>.
    /// If it fails to start, it is disposed and the start-up exception is thrown. <paramref name="testServices"/> replace
    /// services after the fixture's own (<see cref="TestServices"/>), for this server only (a test clock).
    /// </summary>
    public TestServerFactory StartServer(IReadOnlyDictionary<string, string?>? extra = null, string environment = "Testing",
        Action<IServiceCollection>? testServices = null)
    {
        var settings = new Dictionary<string, string?>(Settings);
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        var factory = new TestServerFactory(settings, environment, testServices is null ? TestServices : services =>
        {
            TestServices?.Invoke(services);
            testServices(services);
        });
        try
        {
            _ = factory.Server; // starts the host: migrations, keys, seed
        }
        catch
        {
            try
            {
                factory.Dispose();
            }
            catch (ObjectDisposedException)
            {
                // The failed host has already disposed its services; the start-up exception is what matters.
            }

            throw;
        }

        return factory;
    }

    /// <summary>Stops the current server and starts another on the same database.</summary>
    public async Task RestartAsync()
    {
        await Factory.DisposeAsync();
        _discovery = null;
        _factory = StartServer();
    }

    public async Task DisposeAsync()
    {
        if (_factory is not null)
        {
            await _factory.DisposeAsync();
        }

        await DropDatabaseAsync();
    }

    /// <summary>A client of the server that keeps cookies and does not follow redirects; a 500 fails with the server's log.</summary>
    public HttpClient CreateClient() =>
        new(new CookieContainerHandler { InnerHandler = Factory.CreateReportingHandler() }) { BaseAddress = TestServerFactory.Authority };

    /// <summary>A browser on the server; a 500 fails with the server's log.</summary>
    public Browser CreateBrowser() => new(new() { [TestServerFactory.Authority.Host] = Factory.CreateReportingHandler() });

    /// <summary>Where the discovery document is on the server.</summary>
    protected virtual string DiscoveryPath => "/.well-known/openid-configuration";

    /// <summary>An endpoint's address, read from the discovery document as a client would.</summary>
    public async Task<string> EndpointAsync(string name)
    {
        _discovery ??= await CreateClient().GetFromJsonAsync<JsonElement>(DiscoveryPath);
        return _discovery.Value.GetProperty(name).GetString()!;
    }

    /// <summary>The key ids the JWKS publishes, in order.</summary>
    public async Task<string[]> PublishedKeyIdsAsync() =>
        [.. new JsonWebKeySet(await CreateClient().GetStringAsync(await EndpointAsync("jwks_uri"))).Keys.Select(k => k.Kid).Order()];

    public async Task<TestClient> CreateClientAsync(Action<ClientDocument> configure)
    {
        var document = new ClientDocument { ClientId = Unique.Name("client"), GrantTypes = [] };
        configure(document);
        await using var scope = Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var descriptor = new OpenIddictApplicationDescriptor();
        ClientDescriptorMapper.Populate(descriptor, document);
        await applications.CreateAsync(descriptor);
        scope.ServiceProvider.GetRequiredService<ClientOrigins>().Invalidate();
        return new TestClient(document.ClientId!, document.ClientSecret, document);
    }

    /// <summary>A public SPA-like client: code + PKCE, refresh tokens, the given scopes.</summary>
    public Task<TestClient> CreatePublicClientAsync(string scope = "openid profile email offline_access", string consentType = "implicit",
        string redirectUri = "https://app.test/callback") =>
        CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.GrantTypes = ["authorization_code", "refresh_token"];
            c.RedirectUris = [redirectUri];
            c.PostLogoutRedirectUris = ["https://app.test/signed-out"];
            c.Scope = scope;
            c.ConsentType = consentType;
        });

    public Task<TestClient> CreateConfidentialClientAsync(Action<ClientDocument>? configure = null) =>
        CreateClientAsync(c =>
        {
            c.ClientSecret = Unique.Secret();
            c.TokenEndpointAuthMethod = "client_secret_basic";
            c.GrantTypes = ["client_credentials"];
            configure?.Invoke(c);
        });

    /// <summary>An administrator's grant of the client to the user (a permanent authorization), as an external-consent client needs.</summary>
    public async Task GrantAsAdministratorAsync(TestClient client, TestUser user, params string[] scopes)
    {
        await using var scope = Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var authorizations = scope.ServiceProvider.GetRequiredService<IOpenIddictAuthorizationManager>();
        var application = await applications.FindByClientIdAsync(client.ClientId);
        var descriptor = new OpenIddictAuthorizationDescriptor
        {
            ApplicationId = await applications.GetIdAsync(application!),
            Subject = user.Id,
            Status = OpenIddictConstants.Statuses.Valid,
            Type = OpenIddictConstants.AuthorizationTypes.Permanent,
            CreationDate = DateTimeOffset.UtcNow,
        };
        descriptor.Scopes.UnionWith(scopes);
        await authorizations.CreateAsync(descriptor);
    }

    public async Task<TestUser> CreateUserAsync(string? email = null, params string[] roles)
    {
        var userName = Unique.Name("user");
        var password = Unique.Secret();
        await using var scope = Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        var user = new ApplicationUser { UserName = userName, Email = email ?? $"{userName}@example.test", EmailConfirmed = true };
        Check(await users.CreateAsync(user, password));
        if (roles.Length > 0)
        {
            var roleManager = scope.ServiceProvider.GetRequiredService<RoleManager<IdentityRole>>();
            foreach (var role in roles.Where(r => !roleManager.RoleExistsAsync(r).GetAwaiter().GetResult()))
            {
                Check(await roleManager.CreateAsync(new IdentityRole(role)));
            }

            Check(await users.AddToRolesAsync(user, roles));
        }

        return new TestUser(user.Id, userName, password, user.Email!);
    }

    /// <summary>Locks the user out for a day, as Identity does after failed sign-ins: nothing else changes (no token is revoked).</summary>
    public async Task LockOutAsync(TestUser user)
    {
        await using var scope = Factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
        Check(await users.SetLockoutEndDateAsync((await users.FindByIdAsync(user.Id))!, DateTimeOffset.UtcNow.AddDays(1)));
    }

    public async Task<string> CreateScopeAsync(params string[] resources)
    {
        var name = Unique.Name("scope");
        await using var scope = Factory.Services.CreateAsyncScope();
        var scopes = scope.ServiceProvider.GetRequiredService<IOpenIddictScopeManager>();
        var descriptor = new OpenIddictScopeDescriptor { Name = name, DisplayName = $"Scope {name}" };
        descriptor.Resources.UnionWith(resources);
        await scopes.CreateAsync(descriptor);
        return name;
    }

    private static void Check(IdentityResult result) =>
        Assert.True(result.Succeeded, string.Join("; ", result.Errors.Select(e => e.Description)));
}

public sealed record TestClient(string ClientId, string? ClientSecret, ClientDocument Document);

public sealed record TestUser(string Id, string UserName, string Password, string Email);

/// <summary>A server on a fresh SQLite file in a temporary folder (subclass it to add settings in the constructor).</summary>
public class SqliteServerFixture : ServerFixture
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "idsrv-tests", Guid.NewGuid().ToString("N"));

    public override DatabaseProvider Provider => DatabaseProvider.Sqlite;

    protected override Task<string> CreateDatabaseAsync()
    {
        Directory.CreateDirectory(_folder);
        return Task.FromResult($"Data Source={Path.Combine(_folder, "identity.db")}");
    }

    protected override Task DropDatabaseAsync()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
        return Task.CompletedTask;
    }
}

public static class Unique
{
    public static string Name(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    public static string Secret() => Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24));
}

/// <summary>A server on a fresh database in the test run's throwaway PostgreSQL cluster.</summary>
public class PostgreSqlServerFixture : ServerFixture
{
    private string? _connectionString;

    public override DatabaseProvider Provider => DatabaseProvider.PostgreSql;

    public override string? UnavailableReason => PostgreSqlCluster.IsAvailable ? null : PostgreSqlCluster.InstallHint;

    protected override async Task<string> CreateDatabaseAsync() =>
        _connectionString = await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync();

    protected override async Task DropDatabaseAsync()
    {
        if (_connectionString is not null)
        {
            await (await PostgreSqlCluster.SharedAsync()).DropDatabaseAsync(_connectionString);
        }
    }
}
