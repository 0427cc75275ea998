using System.Reflection;
using IdentityServer.Accounts;
using IdentityServer.Authorization;
using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Hosting;
using IdentityServer.Keys;
using Microsoft.Extensions.Options;

try
{
    var builder = WebApplication.CreateBuilder(args);
    builder.AddHosting()
        .AddData()
        .AddKeys()
        .AddAccounts()
        .AddClients()
        .AddAuthorizationServer();

    var app = builder.Build();
    app.UseHosting();
    app.MapHosting()
        .MapAuthorizationServer();
    app.Run();
    return 0;
}
catch (Exception e) when (e is StartupConfigurationException or OptionsValidationException
    // Only as our own process: hosted in another's (WebApplicationFactory runs this Main inside a test host), the
    // exception must reach that host, which otherwise sees a normal return and fails later without the cause.
    && Assembly.GetEntryAssembly() == typeof(Program).Assembly)
{
    // Configuration that cannot work stops the start with one clear line, not a stack trace.
    Console.Error.WriteLine($"Identity server cannot start: {e.Message}");
    return 1;
}

public partial class Program;
