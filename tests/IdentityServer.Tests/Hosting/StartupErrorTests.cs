using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// Configuration that cannot work stops the real server process before it serves anything: exit code 1 and one
/// clear line on stderr naming the setting, no stack trace.
/// </summary>
public sealed class StartupErrorTests
{
    public static readonly TheoryData<string, string, string, string> InvalidConfigurations = new()
    {
        // variable, value, what the message must name (twice)
        { "Seed__Clients__0__redirect_uri_typo", "https://app.test/callback", "Seed:Clients:0", "redirect_uri_typo" },
        { "Seed__Users__0__password", "short", "Seed:Users:0", "password" },
        { "Database__Provider", "Oracle", "Database:Provider", "Oracle" },
        { "Hosting__KnownProxies__0", "proxy.internal", "Hosting:KnownProxies:0", "proxy.internal" },
        { "Hosting__KnownNetworks__0", "10.1.0.0/99", "Hosting:KnownNetworks:0", "10.1.0.0/99" },
        { "Keys__SigningCertificate__Path", "/nonexistent/signing.pfx", "Keys:SigningCertificate", "/nonexistent/signing.pfx" },
        { "Keys__KeyRingCertificate__Path", "/nonexistent/key-ring.pfx", "Keys:KeyRingCertificate", "/nonexistent/key-ring.pfx" },
        { "Keys__PreviousKeyRingCertificates__0__Path", "/nonexistent/old.pfx", "Keys:PreviousKeyRingCertificates:0", "/nonexistent/old.pfx" },
        { "ExternalProviders__corp__Authority", "http://login.example.com/", "ExternalProviders:corp:Authority", "https" },
        // Values the configuration binder cannot convert: an operator's typo, not a crash with a stack trace.
        { "Database__MigrateOnStartup", "yes", "Database:MigrateOnStartup", "'yes'" },
        // An empty database (the DBA's script not applied) read "cannot reach the Sqlite database: no such table".
        { "Database__MigrateOnStartup", "false", "Database:MigrateOnStartup is false", "lacks" },
        { "Tokens__AccessTokenLifetime", "1 hour", "Tokens:AccessTokenLifetime", "'1 hour'" },
        // Out of range, named by key and value: the nested settings' ranges (Email:Smtp, Accounts:Lockout) were not checked
        // at all, so the port started, and the other messages named a class and a property instead of the setting.
        { "Email__Smtp__Port", "99999", "Email:Smtp:Port", "99999" },
        // A bare word parses as a mailbox, and every email would then have been refused by the SMTP server.
        { "Email__From", "not-an-email", "Email:From", "not a valid email address" },
        { "Accounts__Lockout__MaxFailedAttempts", "0", "Accounts:Lockout:MaxFailedAttempts", "= 0" },
        { "Tokens__AccessTokenLifetime", "00:00:01", "Tokens:AccessTokenLifetime", "00:00:01" },
        { "RateLimiting__PerIp__Window", "00:00:00", "RateLimiting:PerIp:Window", "00:00:00" },
        // An issuer without its scheme started, and then every protocol request failed.
        { "Tokens__Issuer", "id.example.com", "Tokens:Issuer", "'id.example.com'" },
        { "Tokens__Issuer", "https://id.example.com/?tenant=1", "Tokens:Issuer", "?tenant=1" },
        // A collector without its scheme ("host:port" parses as a URI whose scheme is the host) failed with a stack trace.
        { "OpenTelemetry__Endpoint", "otel-collector:4317", "OpenTelemetry:Endpoint", "'otel-collector:4317'" },
        // Without its scheme every emailed link was a 500; with a path, query or fragment links went to another path.
        { "Accounts__PublicOrigin", "id.example.com", "Accounts:PublicOrigin", "'id.example.com'" },
        { "Accounts__PublicOrigin", "https://id.example.com/elsewhere?tenant=1", "Accounts:PublicOrigin", "/elsewhere?tenant=1" },
        // A URL where WebAuthn wants a domain name went to browsers as the rpId, and every passkey ceremony failed there.
        { "Accounts__Passkeys__ServerDomain", "https://id.example.com/", "Accounts:Passkeys:ServerDomain", "'https://id.example.com/'" },
        // Taken as it was, and then every registration asking for the grant failed on the client document's rules.
        { "Registration__AllowedGrantTypes__0", "password", "Registration:AllowedGrantTypes:0", "'password'" },
        // Nothing listens on port 1: the database is unreachable.
        { "ConnectionStrings__IdentityServer", "Host=127.0.0.1;Port=1;Username=nobody;Timeout=3", "PostgreSql database", "ConnectionStrings:IdentityServer" },
        // SqlClient refuses to open any connection in .NET's invariant globalization mode: this said that, with a stack trace.
        { "ConnectionStrings__IdentityServer", "Server=127.0.0.1,1;User Id=nobody;Password=x;Connect Timeout=3", "SqlServer database", "ConnectionStrings:IdentityServer" },
        // A connection string its provider cannot parse (a misspelt keyword, another provider's) failed with a stack trace.
        { "ConnectionStrings__IdentityServer", "Data Sorce=/tmp/identityserver.db", "not a valid Sqlite connection string", "'data sorce'" },
        { "ConnectionStrings__IdentityServer", "Server=127.0.0.1;Hots=db.internal", "not a valid SqlServer connection string", "'hots'" },
        { "ConnectionStrings__IdentityServer", "Host=db.internal;Port=five", "not a valid PostgreSql connection string", "port" },
    };

    [Theory]
    [MemberData(nameof(InvalidConfigurations))]
    public async Task Invalid_configuration_stops_the_process_with_exit_code_1_and_one_clear_line_on_stderr(
        string variable, string value, string entry, string field)
    {
        var environment = new Dictionary<string, string?>
        {
            // Production: no demo seed, so index 0 is this test's own entry.
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            [variable] = value,
        };
        if (variable.StartsWith("Seed__Clients__0", StringComparison.Ordinal))
        {
            environment["Seed__Clients__0__client_id"] = Unique.Name("bad");
            environment["Seed__Clients__0__client_secret"] = Unique.Secret();
            environment["Seed__Clients__0__grant_types__0"] = "client_credentials";
        }
        else if (variable.StartsWith("ConnectionStrings__", StringComparison.Ordinal))
        {
            environment["Database__Provider"] = value.Split('=')[0] switch { "Server" => "SqlServer", "Host" => "PostgreSql", _ => "Sqlite" };
        }
        else if (variable.StartsWith("Seed__Users__0", StringComparison.Ordinal))
        {
            environment["Seed__Users__0__user_name"] = Unique.Name("bad");
        }

        await using var server = ServerProcess.Start(environment);

        await StartupErrors.AssertStopsWithOneLineAsync(server, entry, field);
    }

    /// <summary>
    /// SqlClient refuses .NET's invariant globalization mode, which an operator may turn on for SQLite or PostgreSQL: with
    /// SQL Server the start says so in one line, before any connection, rather than with SqlClient's stack trace.
    /// </summary>
    [Fact]
    public async Task Sql_server_in_the_invariant_globalization_mode_stops_the_start_naming_the_variable()
    {
        await using var server = ServerProcess.Start(new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] = "true",
            ["Database__Provider"] = "SqlServer",
            ["ConnectionStrings__IdentityServer"] = "Server=127.0.0.1,1;User Id=nobody;Password=x;Connect Timeout=3",
        });

        await StartupErrors.AssertStopsWithOneLineAsync(server, "Database:Provider is SqlServer", "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT");
    }
}
