using IdentityServer.Clients;

namespace IdentityServer.Admin.Pages.Scopes;

public sealed class ScopeForm
{
    public string? Name { get; set; }

    public string? DisplayName { get; set; }

    public string? Description { get; set; }

    /// <summary>One resource (audience) per line.</summary>
    public string? Resources { get; set; }

    public string? ETag { get; set; }

    public static readonly IReadOnlyDictionary<string, string> Fields = new Dictionary<string, string>
    {
        ["name"] = nameof(Name),
        ["display_name"] = nameof(DisplayName),
        ["description"] = nameof(Description),
        ["resources"] = nameof(Resources),
    };

    public static ScopeForm From(ScopeDocument document, string? etag) => new()
    {
        Name = document.Name,
        DisplayName = document.DisplayName,
        Description = document.Description,
        Resources = AdminHtml.Lines(document.Resources),
        ETag = etag,
    };

    public ScopeDocument ToDocument() => new()
    {
        Name = Name?.Trim(),
        DisplayName = string.IsNullOrWhiteSpace(DisplayName) ? null : DisplayName.Trim(),
        Description = string.IsNullOrWhiteSpace(Description) ? null : Description.Trim(),
        Resources = AdminHtml.SplitLines(Resources),
    };
}
