using Microsoft.Playwright;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>Debian's Chromium for the browser tests, driven by Playwright: no browser is ever downloaded.</summary>
public static class SystemChromium
{
    public const string ExecutablePath = "/usr/bin/chromium";

    /// <summary>Skips the test where Chromium is not installed, with the hint that installs it.</summary>
    public static void SkipUnlessInstalled()
    {
        Skip.IfNot(File.Exists(ExecutablePath),
            $"Chromium is not installed at {ExecutablePath}: install it with `apt-get install -y chromium` (.ci/run does); no browser is downloaded.");
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
    }

    /// <summary>A headless Chromium with nothing of its own running in the background (updates, sync, first-run pages).</summary>
    public static Task<IBrowser> LaunchAsync(IPlaywright playwright) => playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
    {
        ExecutablePath = ExecutablePath,
        Headless = true,
        Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
}
