using IdentityServer.Shared;
using Microsoft.Extensions.Options;

namespace IdentityServer.Hosting;

/// <summary>
/// Configuration that cannot work (an unknown provider, an invalid seed entry). Program prints its message as
/// one line and exits, instead of a stack trace.
/// </summary>
public sealed class StartupConfigurationException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>
    /// The one line that says why a start failed on configuration: ours, an options validation's, or a value the
    /// configuration binder could not convert (<c>Database__MigrateOnStartup=yes</c>, a lifetime that is no TimeSpan),
    /// whose message names the setting and the value. Null when the failure is not the configuration's.
    /// </summary>
    public static string? ReasonOf(Exception failure) =>
        failure.AndItsCauses().FirstOrDefault(e => e is StartupConfigurationException or OptionsValidationException
            || (e is InvalidOperationException && e.TargetSite?.DeclaringType == typeof(ConfigurationBinder)))?.Message;
}
