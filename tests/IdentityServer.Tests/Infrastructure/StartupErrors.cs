using Xunit;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>How a server process that cannot start must stop: configuration errors are one clear line, never a stack trace.</summary>
public static class StartupErrors
{
    /// <summary>Exit code 1 and one line on stderr that names <paramref name="mentions"/>; no stack trace, no exception's name.</summary>
    public static async Task AssertStopsWithOneLineAsync(ServerProcess server, params string[] mentions)
    {
        var exitCode = await server.WaitForExitAsync();

        Assert.True(exitCode == 1, $"Exit code {exitCode}.\n{server.Output}");
        var lines = server.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"Expected one line on stderr.\n{server.Output}");
        Assert.StartsWith("Identity server cannot start:", lines[0]);
        foreach (var mention in mentions)
        {
            Assert.Contains(mention, lines[0]);
        }

        Assert.DoesNotContain("   at ", server.Output);
        Assert.DoesNotContain("Exception", server.StandardError);
    }
}
