using System.Text.Json;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>The repository the tests run from (found by walking up from the test output to IdentityServer.sln).</summary>
public static class Repository
{
    public static string Root { get; } = FindRoot();

    /// <summary>The developer configuration at the repository root, the file a developer edits.</summary>
    public static string DevelopmentSettingsPath => Path.Combine(Root, "appsettings.Development.json");

    /// <summary>The <c>Seed</c> section of <see cref="DevelopmentSettingsPath"/>.</summary>
    public static JsonElement DevelopmentSeed() =>
        JsonDocument.Parse(File.ReadAllText(DevelopmentSettingsPath), new() { CommentHandling = JsonCommentHandling.Skip })
            .RootElement.GetProperty("Seed").Clone();

    /// <summary>A client entry of the development seed, by client_id.</summary>
    public static JsonElement DevelopmentClient(string clientId) =>
        DevelopmentSeed().GetProperty("Clients").EnumerateArray().Single(c => c.GetProperty("client_id").GetString() == clientId);

    private static string FindRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "IdentityServer.sln")))
            {
                return folder.FullName;
            }
        }

        throw new DirectoryNotFoundException($"No IdentityServer.sln above {AppContext.BaseDirectory}.");
    }
}
