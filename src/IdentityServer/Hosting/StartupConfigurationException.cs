namespace IdentityServer.Hosting;

/// <summary>
/// Configuration that cannot work (an unknown provider, an invalid seed entry). Program prints its message as
/// one line and exits, instead of a stack trace.
/// </summary>
public sealed class StartupConfigurationException(string message, Exception? inner = null) : Exception(message, inner);
