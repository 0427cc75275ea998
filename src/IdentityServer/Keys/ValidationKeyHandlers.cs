using OpenIddict.Validation;
using static OpenIddict.Validation.OpenIddictValidationEvents;

namespace IdentityServer.Keys;

/// <summary>
/// OpenIddict's validation stack (used by the admin API to accept our own access tokens) copies the server's
/// signing keys once, when its options are built. This handler gives it the key ring as it is at each request, so
/// access tokens signed by a key that started signing after the start (a rotation) are accepted too.
/// </summary>
public static class ValidationKeyHandlers
{
    public static OpenIddictValidationBuilder UseKeyRing(this OpenIddictValidationBuilder validation) => validation
        .AddEventHandler<ValidateTokenContext>(handler => handler.UseSingletonHandler<ValidateWithCurrentKeys>()
            .SetOrder(OpenIddictValidationHandlers.Protection.ResolveTokenValidationParameters.Descriptor.Order + 500)
            .SetType(OpenIddictValidationHandlerType.Custom));

    public sealed class ValidateWithCurrentKeys(KeyRing keys) : IOpenIddictValidationHandler<ValidateTokenContext>
    {
        public async ValueTask HandleAsync(ValidateTokenContext context)
        {
            if (context.TokenValidationParameters is { } parameters)
            {
                await OpenIddictKeyHandlers.LoadKeyNamedByAsync(keys, context.Token);
                parameters.IssuerSigningKeys = keys.ValidationKeys;
                parameters.IssuerSigningKeyValidator = OpenIddictKeyHandlers.HmacOnlyForInternalTokens;
            }
        }
    }
}
