using System.Runtime.CompilerServices;
using System.Text.Json;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;
using Microsoft.AspNetCore;

namespace IdentityServer.Clients;

/// <summary>
/// What <see cref="ClientDescriptorMapper.Populate"/> keeps in a client's properties, as the request paths read it:
/// parsed once per stored version of the client, not once per request. The client cache hands out its snapshot, or
/// copies sharing its <c>Properties</c> string, so a snapshot is parsed once for its lifetime in the cache; a changed
/// client has a new string.
/// </summary>
public sealed record StoredClientProperties(string? AuthMethod, string? BackChannelLogoutUri, string? FrontChannelLogoutUri,
    IReadOnlyList<string> AudienceAliases, bool DpopBoundAccessTokens, bool RequireSignedRequestObject, bool SelfRegistered, string? JwksUri)
{
    private static readonly StoredClientProperties None = new(null, null, null, [], false, false, false, null);

    private static readonly ConditionalWeakTable<string, StoredClientProperties> Parsed = new();

    public static StoredClientProperties Of(OpenIddictEntityFrameworkCoreApplication application) =>
        string.IsNullOrEmpty(application.Properties) ? None : Parsed.GetValue(application.Properties, Parse);

    /// <summary>The stored properties of the client <paramref name="clientId"/>; null when there is no such client.</summary>
    public static async ValueTask<StoredClientProperties?> OfClientAsync(IOpenIddictApplicationManager applications, string clientId, CancellationToken ct) =>
        await applications.FindByClientIdAsync(clientId, ct) is OpenIddictEntityFrameworkCoreApplication application ? Of(application) : null;

    /// <summary>
    /// The request's client manager, for an OpenIddict handler that is a singleton (built once, not per request) and
    /// needs it only now and then.
    /// </summary>
    public static IOpenIddictApplicationManager ApplicationsOf(OpenIddictServerEvents.BaseContext context) =>
        context.Transaction.GetHttpRequest()!.HttpContext.RequestServices.GetRequiredService<IOpenIddictApplicationManager>();

    private static StoredClientProperties Parse(string json)
    {
        Dictionary<string, JsonElement>? properties;
        try
        {
            properties = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json);
        }
        catch (JsonException)
        {
            // Not an object of properties: nothing of ours is stored in it.
            return None;
        }

        return properties is null ? None : new(ClientDescriptorMapper.StoredAuthMethodOf(properties),
            ClientDescriptorMapper.BackChannelLogoutUriOf(properties), ClientDescriptorMapper.FrontChannelLogoutUriOf(properties),
            ClientDescriptorMapper.AudienceAliasesOf(properties),
            ClientDescriptorMapper.DpopBoundAccessTokensOf(properties), ClientDescriptorMapper.RequireSignedRequestObjectOf(properties),
            properties.ContainsKey(ClientDescriptorMapper.RegistrationAccessTokenHashProperty), ClientDescriptorMapper.JwksUriOf(properties));
    }
}
