using OpenIddict.Abstractions;
using OpenIddict.Validation;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Validation.OpenIddictValidationEvents;

namespace IdentityServer.Admin;

/// <summary>
/// The admin API (and a registration that needs an initial access token) takes bearer tokens only, so a token bound
/// to a key (<c>cnf</c>: a DPoP-bound token) is refused as invalid: whoever presents it as a bearer token has shown no
/// key (RFC 9449 section 7.2). Stands in for OpenIddict's own check, which knows only certificate-bound tokens and
/// throws on any other binding (a 500).
/// </summary>
public sealed class BoundTokenRefusal(ILogger<BoundTokenRefusal> logger) : IOpenIddictValidationHandler<ValidateTokenContext>
{
    public static OpenIddictValidationHandlerDescriptor Descriptor { get; } = OpenIddictValidationHandlerDescriptor.CreateBuilder<ValidateTokenContext>()
        .UseSingletonHandler<BoundTokenRefusal>()
        .SetOrder(OpenIddictValidationHandlers.Protection.ValidateProofOfPossession.Descriptor.Order)
        .SetType(OpenIddictValidationHandlerType.Custom)
        .Build();

    public ValueTask HandleAsync(ValidateTokenContext context)
    {
        if (context.Principal?.GetClaim(Claims.Confirmation) is { Length: > 0 })
        {
            logger.LogWarning(AdminEvents.AccessRefused, "Admin access refused for {Subject} (bearer token): the access token is bound to a key",
                context.Principal.GetClaim(Claims.Subject) ?? "(none)");
            context.Reject(Errors.InvalidToken, "The access token is bound to a key (DPoP); this API takes bearer tokens only.");
        }

        return default;
    }
}
