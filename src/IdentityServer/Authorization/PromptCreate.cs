using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// <c>prompt=create</c> (OpenID Connect "Initiating User Registration via OpenID Connect 1.0"): an app's sign-up button,
/// answered with the registration page (<see cref="Pages.AuthorizeModel"/>). Offered only while registration is on;
/// OpenIddict refuses a prompt value it was not given.
/// </summary>
public static class PromptCreate
{
    public const string Value = "create";

    public static OpenIddictServerBuilder AllowPromptCreate(this OpenIddictServerBuilder server) => server
        .Configure(options => options.PromptValues.Add(Value))
        // OpenIddict refuses none with the prompt values it knows of, not with this one (OpenID Connect Core 3.1.2.1:
        // none with any other value is an error, and none never shows a page).
        .AddEventHandler<ValidateAuthorizationRequestContext>(handler => handler.UseInlineHandler(RefuseNoneWithCreate)
            .SetOrder(OpenIddictServerHandlers.Authentication.ValidatePromptParameter.Descriptor.Order + 1))
        .AddEventHandler<ValidatePushedAuthorizationRequestContext>(handler => handler.UseInlineHandler(RefuseNoneWithCreate)
            .SetOrder(OpenIddictServerHandlers.Authentication.ValidatePushedPromptParameter.Descriptor.Order + 1));

    private static ValueTask RefuseNoneWithCreate(BaseValidatingContext context)
    {
        if (context.Transaction.Request is { } request && request.HasPromptValue(PromptValues.None) && request.HasPromptValue(Value))
        {
            context.Reject(Errors.InvalidRequest, "The 'prompt' parameter cannot ask for both 'none' and 'create'.");
        }

        return default;
    }
}
