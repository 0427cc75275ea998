using System.Text.Json;
using System.Text.Json.Nodes;
using IdentityServer.Hosting;

namespace IdentityServer.Clients;

/// <summary>
/// Reads a configuration section as JSON, so that documents bound from configuration (any source, environment
/// variables included) follow exactly the same JSON rules as the admin API: snake_case names, unknown fields refused.
/// </summary>
public static class ConfigurationJson
{
    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web);

    /// <summary>Reads each child of <paramref name="section"/> (an array in configuration) as a <typeparamref name="T"/>.</summary>
    public static List<(string Path, T Document)> ReadList<T>(IConfigurationSection section)
    {
        var documents = new List<(string, T)>();
        foreach (var child in section.GetChildren().OrderBy(c => int.TryParse(c.Key, out var i) ? i : int.MaxValue))
        {
            try
            {
                var document = ToNode(child).Deserialize<T>(Options)
                    ?? throw new StartupConfigurationException($"{child.Path}: is empty.");
                documents.Add((child.Path, document));
            }
            catch (JsonException e)
            {
                throw new StartupConfigurationException($"{child.Path}: {Describe(e)}", e);
            }
        }

        return documents;
    }

    private static string Describe(JsonException e) =>
        e.Message.Contains("could not be mapped", StringComparison.Ordinal)
            ? $"unknown field {e.Path?.TrimStart('$', '.')} (fields are the RFC 7591 names, e.g. client_id, redirect_uris)."
            : $"field {e.Path?.TrimStart('$', '.')} has the wrong shape: {e.Message}";

    private static JsonNode? ToNode(IConfigurationSection section)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0)
        {
            return section.Value switch
            {
                null => null,
                var v when bool.TryParse(v, out var b) => JsonValue.Create(b),
                var v => JsonValue.Create(v),
            };
        }

        if (children.All(c => int.TryParse(c.Key, out _)))
        {
            return new JsonArray(children.OrderBy(c => int.Parse(c.Key)).Select(ToNode).ToArray());
        }

        var obj = new JsonObject();
        foreach (var child in children)
        {
            obj[child.Key] = ToNode(child);
        }

        return obj;
    }
}
