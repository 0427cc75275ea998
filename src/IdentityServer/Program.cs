using System.Reflection;
using IdentityServer.Accounts;
using IdentityServer.Admin;
using IdentityServer.Authorization;
using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Dpop;
using IdentityServer.Hosting;
using IdentityServer.Jobs;
using IdentityServer.Keys;
using IdentityServer.Logout;
using IdentityServer.Performance;
using IdentityServer.Registration;
using IdentityServer.Telemetry;

try
{
    var builder = WebApplication.CreateBuilder(args);
    // Start-up failures are reported once, below, rather than also by the host's log with a stack trace.
    builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", level => level is >= LogLevel.Information and < LogLevel.Error);
    builder.AddHosting()
        .AddData()
        .AddKeys()
        .AddAccounts()
        .AddClients()
        .AddAuthorizationServer()
        .AddDpop()
        .AddRegistration()
        .AddLogoutNotifications()
        .AddAdmin()
        .AddPerformance()
        .AddTelemetry()
        .AddJobs();

    var app = builder.Build();
    app.UseHosting();
    app.MapHosting()
        .MapAuthorizationServer()
        .MapRegistration()
        .MapAdmin()
        .MapTelemetry();
    app.Run();
    return 0;
}
// Only as our own process: hosted in another's (WebApplicationFactory runs this Main inside a test host), the
// exception must reach that host, which otherwise sees a normal return and fails later without the cause.
catch (Exception e) when (e is not HostAbortedException && Assembly.GetEntryAssembly() == typeof(Program).Assembly)
{
    // Configuration that cannot work stops the start with one clear line, not a stack trace.
    Console.Error.WriteLine(StartupConfigurationException.ReasonOf(e) is { } reason
        ? $"Identity server cannot start: {reason}"
        : $"Identity server failed to start: {e}");
    return 1;
}

public partial class Program;
