namespace IdentityServer.Admin.Pages.Clients;

/// <summary>What the client form fields show: the values, the scopes to choose from, whether it registers a new client.</summary>
public sealed record ClientFieldsView(ClientForm Form, IReadOnlyList<string> KnownScopes, bool IsNew, string? RedirectExample = null);
