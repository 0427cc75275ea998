using Microsoft.Extensions.Options;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;
using static OpenIddict.Server.OpenIddictServerHandlers;

namespace IdentityServer.Performance;

/// <summary>
/// Identity tokens get no token entry unless <see cref="PerformanceOptions.StoreIdentityTokens"/> is set. An id token
/// tells the client who signed in; no API accepts it as a credential, so there is nothing to revoke or introspect,
/// and OpenIddict validates one without an entry (an id_token_hint at logout) by its signature and issuer alone.
/// Storing it cost a database write per sign-in and refresh. Access and refresh tokens, codes and device codes keep
/// their entries (they are what revocation and redemption act on).
/// </summary>
public sealed class IdentityTokenStorage(IOptions<PerformanceOptions> options) : IOpenIddictServerHandler<GenerateTokenContext>
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<GenerateTokenContext>()
        .UseSingletonHandler<IdentityTokenStorage>()
        .SetOrder(Protection.CreateTokenEntry.Descriptor.Order - 500)
        .SetType(OpenIddictServerHandlerType.Custom)
        .Build();

    public ValueTask HandleAsync(GenerateTokenContext context)
    {
        if (context.TokenType == TokenTypeIdentifiers.IdentityToken && !options.Value.StoreIdentityTokens)
        {
            context.CreateTokenEntry = false;
        }

        return ValueTask.CompletedTask;
    }
}
