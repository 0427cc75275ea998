using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Clients;

/// <summary>
/// A client assertion that is not valid is <c>invalid_client</c> (401), whatever is wrong with it (RFC 7523 section 3.2,
/// RFC 6749 section 5.2). OpenIddict passes on the error of the check that failed: <c>invalid_token</c> for an audience
/// it does not take, <c>invalid_request</c> for a claim it cannot find, <c>invalid_grant</c> for an issuer that is not the
/// client_id sent beside it. The checks run between two marks in the request's transaction: a request whose assertion
/// checks began and never finished was refused by one of them, and its error becomes <c>invalid_client</c>, its
/// description kept. Errors before the assertion is read (a missing grant type) or after it passed (a bad code) stay.
/// </summary>
public static class ClientAssertionErrors
{
    private const string Began = "IdentityServer.ClientAssertion.ChecksBegan";
    private const string Passed = "IdentityServer.ClientAssertion.ChecksPassed";

    public static OpenIddictServerBuilder AnswerClientAssertionErrorsAsInvalidClient(this OpenIddictServerBuilder server) => server
        .AddEventHandler<ProcessAuthenticationContext>(handler => handler.UseInlineHandler(context =>
        {
            if (!string.IsNullOrEmpty(context.ClientAssertion))
            {
                context.Transaction.Properties[Began] = true;
            }

            return default;
        }).SetOrder(OpenIddictServerHandlers.ValidateClientAssertion.Descriptor.Order - 2))
        .AddEventHandler<ProcessAuthenticationContext>(handler => handler.UseInlineHandler(context =>
        {
            if (context.Transaction.Properties.ContainsKey(Began))
            {
                context.Transaction.Properties[Passed] = true;
            }

            return default;
        }).SetOrder(OpenIddictServerHandlers.ValidateClientAssertionIssuer.Descriptor.Order + 1))
        .AddEventHandler(AsInvalidClient<ApplyTokenResponseContext>())
        .AddEventHandler(AsInvalidClient<ApplyIntrospectionResponseContext>())
        .AddEventHandler(AsInvalidClient<ApplyRevocationResponseContext>())
        .AddEventHandler(AsInvalidClient<ApplyPushedAuthorizationResponseContext>())
        .AddEventHandler(AsInvalidClient<ApplyDeviceAuthorizationResponseContext>());

    /// <summary>Before the response's status code and challenge are written from its error.</summary>
    private static OpenIddictServerHandlerDescriptor AsInvalidClient<TContext>() where TContext : BaseRequestContext =>
        OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .UseInlineHandler(context =>
            {
                if (context.Transaction.Properties.ContainsKey(Began) && !context.Transaction.Properties.ContainsKey(Passed)
                    && context.Transaction.Response is { Error: { } error } response && error != Errors.InvalidClient)
                {
                    response.Error = Errors.InvalidClient;
                }

                return default;
            })
            .SetOrder(OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<TContext>.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();
}
