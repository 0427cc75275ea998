using System.Collections.Frozen;
using System.Collections.Immutable;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// RFC 6749 3.1: request parameters must not be included more than once. OpenIddict reads a repeated query or form
/// key as one array-valued parameter, and its typed accessors (state, prompt, response_type...) then read nothing:
/// the values were silently dropped (a state not echoed, a prompt=login not honoured, "response_type is missing").
/// Refused with invalid_request naming the parameter: where clients authenticate (and at userinfo), as soon as the
/// request is read, before OpenIddict takes the client's credentials (or the access token) from it (a repeated
/// client_secret next to Basic credentials would otherwise read as absent and pass); at the authorization and
/// end-session endpoints first of the validation handlers (below).
/// </summary>
public static class RepeatedParameters
{
    /// <summary>
    /// Defined as repeatable: <c>resource</c> (RFC 8707) and <c>audience</c> (RFC 8693), both read by OpenIddict as
    /// lists. OpenIddict refuses <c>audience</c> outside token exchange.
    /// </summary>
    public static readonly FrozenSet<string> Repeatable = FrozenSet.Create(StringComparer.Ordinal, Parameters.Resource, Parameters.Audience);

    public static OpenIddictServerBuilder RefuseRepeatedParameters(this OpenIddictServerBuilder server) => server
        .AddEventHandler(Refuse<ValidateAuthorizationRequestContext>.Descriptor)
        .AddEventHandler(Refuse<ExtractPushedAuthorizationRequestContext>.OnceRead)
        .AddEventHandler(Refuse<ExtractTokenRequestContext>.OnceRead)
        .AddEventHandler(Refuse<ExtractDeviceAuthorizationRequestContext>.OnceRead)
        .AddEventHandler(Refuse<ExtractIntrospectionRequestContext>.OnceRead)
        .AddEventHandler(Refuse<ExtractRevocationRequestContext>.OnceRead)
        .AddEventHandler(Refuse<ExtractUserInfoRequestContext>.OnceRead)
        .AddEventHandler(Refuse<ValidateEndSessionRequestContext>.Descriptor);

    /// <summary>The first repeated parameter of a request, or null.</summary>
    public static string? FindRepeated(OpenIddict.Abstractions.OpenIddictRequest request)
    {
        foreach (var (name, value) in request.GetParameters())
        {
            if (value.GetRawValue() is ImmutableArray<string?> && !Repeatable.Contains(name))
            {
                return name;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether a parameter's name may be quoted in an error_description: one that looks like a parameter name (letters,
    /// digits, <c>_ - . :</c>, at most 64). Any name may be sent, and the description may be shown on this server's error
    /// page: a name that reads as a sentence ("Your account is suspended, call ...") is not repeated there.
    /// </summary>
    public static bool IsQuotable(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or ':');

    /// <summary>Refuses a request with a repeated parameter, at the point of the pipeline its descriptor names.</summary>
    public sealed class Refuse<TContext>(ILogger<Refuse<TContext>> logger) : IOpenIddictServerHandler<TContext>
        where TContext : BaseValidatingContext
    {
        /// <summary>
        /// First of the endpoint's validation handlers (OpenIddict's own start at int.MinValue + 100,000). At the
        /// authorization endpoint the error then reaches the page, which sends it to the client only once it has checked
        /// the client and the exact redirect_uri itself; a repeated client_id or redirect_uri reads as absent there, so
        /// it gets the error page, and a repeated state reads as absent too, so it is never echoed.
        /// </summary>
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .UseSingletonHandler<Refuse<TContext>>()
            .SetOrder(int.MinValue + 50_000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        /// <summary>
        /// Right after the request is read from the query or form, before its credentials are taken from it (the order
        /// of OpenIddict's Basic credentials handler is the same for every endpoint).
        /// </summary>
        public static OpenIddictServerHandlerDescriptor OnceRead { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .UseSingletonHandler<Refuse<TContext>>()
            .SetOrder(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers.ExtractBasicAuthenticationCredentials<ExtractTokenRequestContext>.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(TContext context)
        {
            if (context.Transaction.Request is { } request && FindRepeated(request) is { } name)
            {
                var description = IsQuotable(name)
                    ? $"The '{name}' parameter must not be sent more than once."
                    : "A parameter was sent more than once.";
                logger.LogInformation(TokenEvents.RequestRefused, "{Endpoint} request refused: {Error} {Description}",
                    context.EndpointType, Errors.InvalidRequest, description);
                context.Reject(Errors.InvalidRequest, description);
            }

            return ValueTask.CompletedTask;
        }
    }
}
