using System.Runtime.CompilerServices;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>Process-wide settings the test servers need, set before any test runs.</summary>
internal static class TestProcessSettings
{
    /// <summary>
    /// Every server a test starts watches its configuration files and web root. With inotify each watcher takes one of
    /// the user's instances (128 by default on Linux, shared by every process of the user), and the suite starts
    /// hundreds of servers, some of them at once: a run beside another (a second suite, an editor) ran out and
    /// failed to start servers. Polling watchers use none; the server processes the tests start inherit it.
    /// </summary>
    [ModuleInitializer]
    internal static void Initialize() => Environment.SetEnvironmentVariable("DOTNET_USE_POLLING_FILE_WATCHER", "true");
}
