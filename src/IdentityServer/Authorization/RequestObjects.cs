using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Text.Json;
using IdentityServer.Clients;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// Signed authorization requests (JAR, RFC 9101): a client with registered keys (<c>jwks</c>) may send its
/// authorization request as a JWT it signed, in the <c>request</c> parameter, to the authorization endpoint or pushed
/// to the PAR endpoint, so nothing on the way (the browser, an extension, a proxy) can change what it asks for. A client
/// registered with <c>require_signed_request_object</c> must. OpenIddict refuses the parameter (request_not_supported):
/// the request object is verified and unpacked here, before OpenIddict's own checks, which then see its parameters as
/// if they had been sent one by one.
/// </summary>
public static class RequestObjects
{
    /// <summary>What the client's keys may sign with (every algorithm <see cref="ClientJsonWebKeys"/> accepts keys for); never <c>none</c> or HMAC.</summary>
    public static readonly string[] Algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

    /// <summary>
    /// The longest a request object may be valid for from now (<c>exp</c>), as FAPI 2.0 asks: the object comes back with
    /// the browser after the login page, so it must outlive the sign-in, but a captured one should not live for days.
    /// </summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromMinutes(60);

    /// <summary>RFC 9101 section 10.8: the <c>typ</c> of a request object; <c>JWT</c> or none are accepted too, as most clients send.</summary>
    public const string MediaType = "oauth-authz-req+jwt";

    /// <summary>RFC 9101 section 10.5: the client metadata that makes request objects mandatory for the client.</summary>
    public const string RequireSignedRequestObject = "require_signed_request_object";

    /// <summary>
    /// Outer parameters kept beside the request object's: who the client is (RFC 9101 section 5 requires client_id
    /// outside) and, at the PAR endpoint, how it authenticates. Every other outer parameter is ignored (section 6.3).
    /// </summary>
    private static readonly FrozenSet<string> KeptFromOutside = FrozenSet.Create(StringComparer.Ordinal,
        Parameters.ClientId, Parameters.ClientSecret, Parameters.ClientAssertion, Parameters.ClientAssertionType);

    /// <summary>Members a request object must not hold: another request, or the client's credentials, which go beside it.</summary>
    private static readonly FrozenSet<string> NotInside = FrozenSet.Create(StringComparer.Ordinal,
        Parameters.Request, Parameters.RequestUri, Parameters.ClientSecret, Parameters.ClientAssertion, Parameters.ClientAssertionType);

    /// <summary>The clock difference allowed between the client and this server for the request object's dates.</summary>
    public static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(1);

    /// <summary>The JWT's own claims: they describe the request object, they are not parameters of the request.</summary>
    private static readonly FrozenSet<string> JwtClaims = FrozenSet.Create(StringComparer.Ordinal,
        Claims.Issuer, Claims.Audience, Claims.ExpiresAt, Claims.NotBefore, Claims.IssuedAt, Claims.JwtId);

    public static OpenIddictServerBuilder AcceptRequestObjects(this OpenIddictServerBuilder server) => server
        .AddEventHandler(Unpack<ExtractAuthorizationRequestContext>.Descriptor(
            OpenIddictServerAspNetCoreHandlers.ExtractGetOrPostRequest<ExtractAuthorizationRequestContext>.Descriptor.Order + 1))
        .AddEventHandler(Unpack<ExtractPushedAuthorizationRequestContext>.Descriptor(
            OpenIddictServerAspNetCoreHandlers.ExtractPostRequest<ExtractPushedAuthorizationRequestContext>.Descriptor.Order + 1))
        .AddEventHandler<HandleConfigurationRequestContext>(handler => handler.UseInlineHandler(context =>
        {
            context.Metadata[Metadata.RequestParameterSupported] = true;
            context.Metadata[Metadata.RequestObjectSigningAlgValuesSupported] = new OpenIddictParameter([.. Algorithms]);
            return default;
        }).SetOrder(OpenIddictServerHandlers.Discovery.AttachAdditionalMetadata.Descriptor.Order + 1));

    /// <summary>
    /// Verifies a request's request object and puts its parameters in the request's place; refuses a request without one
    /// from a client that must send one. A pushed request is checked when it is pushed, so its <c>request_uri</c> at the
    /// authorization endpoint is not checked again.
    /// </summary>
    public sealed class Unpack<TContext>(TimeProvider clock, ILogger<Unpack<TContext>> logger) : IOpenIddictServerHandler<TContext>
        where TContext : BaseValidatingContext
    {
        /// <summary>
        /// Right after the request is read, while it is extracted: OpenIddict's validation contexts copy parameters
        /// (the redirect_uri) from the request when they are made, so the request object's must be in place by then.
        /// </summary>
        public static OpenIddictServerHandlerDescriptor Descriptor(int order) => OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .UseSingletonHandler<Unpack<TContext>>()
            .SetOrder(order)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        /// <summary>Stateless, so one serves every request.</summary>
        private static readonly JsonWebTokenHandler Tokens = new();

        public async ValueTask HandleAsync(TContext context)
        {
            var request = context.Transaction.Request!;
            var pushed = context is ExtractPushedAuthorizationRequestContext;
            if (string.IsNullOrEmpty(request.Request))
            {
                if ((pushed || string.IsNullOrEmpty(request.RequestUri)) && !string.IsNullOrEmpty(request.ClientId)
                    && await StoredClientProperties.OfClientAsync(StoredClientProperties.ApplicationsOf(context), request.ClientId, context.CancellationToken)
                        is { RequireSignedRequestObject: true })
                {
                    Refuse(context, Errors.InvalidRequest, "This client must send its authorization request signed, as a request object in the 'request' parameter (RFC 9101).");
                }

                return;
            }

            if (!string.IsNullOrEmpty(request.RequestUri))
            {
                Refuse(context, Errors.InvalidRequest, "The 'request' and 'request_uri' parameters cannot be sent together.");
                return;
            }

            if (string.IsNullOrEmpty(request.ClientId))
            {
                Refuse(context, Errors.InvalidRequest, "The 'client_id' parameter is required beside a request object.");
                return;
            }

            var applications = StoredClientProperties.ApplicationsOf(context);
            if (await applications.FindByClientIdAsync(request.ClientId, context.CancellationToken) is not { } application)
            {
                Refuse(context, Errors.InvalidClient, "The client is not registered.");
                return;
            }

            var keys = await applications.GetJsonWebKeySetAsync(application, context.CancellationToken);
            if (keys is null || keys.GetSigningKeys() is not { Count: > 0 } signingKeys)
            {
                Refuse(context, Errors.InvalidRequestObject, "The client has no registered keys (jwks) to verify a request object with.");
                return;
            }

            var issuer = context.Options.Issuer ?? context.BaseUri;
            var (payload, problem) = await VerifyAsync(request.Request, signingKeys, issuer);
            using (payload)
            {
                var parameters = payload is null ? null : ParametersOf(payload.RootElement, request.ClientId, out problem);
                if (parameters is null)
                {
                    Refuse(context, Errors.InvalidRequestObject, problem!);
                    return;
                }

                // Outside its lifetime, the request object is still the client's own: its parameters take the outer ones'
                // place before it is refused, so that the refusal goes to its redirect_uri, with its state (a request
                // object that expired while the person signed in, say).
                var outsideLifetime = LifetimeProblem(payload!.RootElement);
                foreach (var name in request.GetParameters().Select(p => p.Key).Where(name => !KeptFromOutside.Contains(name)).ToList())
                {
                    request.RemoveParameter(name);
                }

                foreach (var (name, value) in parameters)
                {
                    request.SetParameter(name, value);
                }

                if (outsideLifetime is not null)
                {
                    Refuse(context, Errors.InvalidRequestObject, outsideLifetime);
                    return;
                }
            }

            logger.LogDebug("{Endpoint} request of {ClientId} read from its request object", context.EndpointType, request.ClientId);
        }

        private void Refuse(TContext context, string error, string description)
        {
            logger.LogInformation(RequestObjectEvents.RequestObjectRefused, "{Endpoint} request of {ClientId} refused: {Error} {Description}",
                context.EndpointType, context.Transaction.Request?.ClientId, error, description);
            context.Reject(error, description);
        }

        /// <summary>
        /// The request object's payload, once verified: a JWS (never <c>none</c>, no critical extensions) signed by one of
        /// the client's keys with an accepted algorithm, of an accepted <c>typ</c>, for this server (<c>aud</c>). Its client
        /// (<c>iss</c>, <c>client_id</c>) is checked with its parameters, its lifetime last.
        /// </summary>
        private static async Task<(JsonDocument? Payload, string? Problem)> VerifyAsync(string requestObject, IList<SecurityKey> keys, Uri? issuer)
        {
            if (requestObject.Count(c => c == '.') != 2)
            {
                return (null, "The request object must be a signed JWT (JWS compact serialization); encrypted request objects are not supported.");
            }

            JsonWebToken unverified;
            try
            {
                unverified = new JsonWebToken(requestObject);
            }
            catch (ArgumentException)
            {
                return (null, "The request object is not a JWT.");
            }

            if (!Algorithms.Contains(unverified.Alg))
            {
                return (null, $"The request object must be signed with one of {string.Join(", ", Algorithms)}.");
            }

            // RFC 7515 4.1.11: extensions the recipient must understand; this server understands none.
            if (unverified.TryGetHeaderValue<object>("crit", out _))
            {
                return (null, "The request object's header has critical extensions ('crit') this server does not understand.");
            }

            var audiences = issuer is null ? [] : new[] { issuer.AbsoluteUri, issuer.AbsoluteUri.TrimEnd('/') };
            var result = await Tokens.ValidateTokenAsync(unverified, new TokenValidationParameters
            {
                IssuerSigningKeys = keys,
                TryAllIssuerSigningKeys = true,
                ValidAlgorithms = Algorithms,
                ValidateIssuer = false, // the client, checked with the parameters
                ValidAudiences = audiences,
                RequireAudience = true,
                ValidateLifetime = false, // checked last, against this server's clock (LifetimeProblem)
                RequireExpirationTime = false,
                RequireSignedTokens = true,
                TypeValidator = (type, _, _) => type is null or "" || type.Equals(MediaType, StringComparison.OrdinalIgnoreCase)
                    || type.Equals("application/" + MediaType, StringComparison.OrdinalIgnoreCase) || type.Equals("JWT", StringComparison.OrdinalIgnoreCase)
                    ? type ?? string.Empty
                    : throw new SecurityTokenInvalidTypeException($"typ '{type}'") { InvalidType = type },
            });
            if (!result.IsValid)
            {
                return (null, result.Exception switch
                {
                    SecurityTokenInvalidAudienceException => $"The request object's 'aud' must be this server's issuer, {issuer?.AbsoluteUri}.",
                    SecurityTokenInvalidTypeException => $"The request object's 'typ' must be '{MediaType}' (or 'JWT').",
                    SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException
                        => "The request object's signature does not verify with any of the client's registered keys.",
                    _ => "The request object is not valid.",
                });
            }

            try
            {
                // Read again, strictly: the token reader may accept bytes after the payload's object.
                return (JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(unverified.EncodedPayload)), null);
            }
            catch (JsonException)
            {
                return (null, "The request object's payload is not a JSON object.");
            }
        }

        /// <summary>
        /// Why the request object is outside its lifetime, by this server's clock give or take <see cref="ClockSkew"/>;
        /// null when within it. <c>exp</c> is required, at most <see cref="MaxLifetime"/> ahead; <c>nbf</c>, if given, not
        /// ahead nor more than <see cref="MaxLifetime"/> before <c>exp</c> or now (FAPI 2.0); <c>iat</c>, if given, not ahead.
        /// </summary>
        private string? LifetimeProblem(JsonElement payload)
        {
            var now = clock.GetUtcNow().ToUnixTimeMilliseconds() / 1000d;
            var (skew, longest) = (ClockSkew.TotalSeconds, MaxLifetime.TotalSeconds);
            if (NumericDate(payload, Claims.ExpiresAt) is not { } expires)
            {
                return "The request object must have an 'exp' claim (a NumericDate).";
            }

            var notBefore = NumericDate(payload, Claims.NotBefore);
            return expires < now - skew ? "The request object has expired."
                : expires > now + longest + skew ? $"The request object's 'exp' is more than {MaxLifetime.TotalMinutes} minutes ahead."
                : notBefore > now + skew ? "The request object is not valid yet ('nbf')."
                : notBefore < now - longest - skew || expires - notBefore > longest
                    ? $"The request object's 'nbf' is more than {MaxLifetime.TotalMinutes} minutes before its 'exp' or now."
                : NumericDate(payload, Claims.IssuedAt) > now + skew ? "The request object's 'iat' is in the future."
                : null;
        }

        /// <summary>A NumericDate claim (RFC 7519 2: seconds, possibly fractional), or null when absent or not a number.</summary>
        private static double? NumericDate(JsonElement payload, string claim) =>
            payload.TryGetProperty(claim, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var seconds)
                ? seconds
                : null;

        /// <summary>
        /// The request object's members as request parameters, each as it would have been sent in a query: strings as they
        /// are, numbers and booleans as their JSON text (max_age 60), objects (<c>claims</c>) as JSON; arrays only where a
        /// parameter may be repeated (resource, audience). Null, with the problem, when one cannot be a parameter, when it
        /// names another client or none (<c>iss</c> or <c>client_id</c>: RFC 9101 section 5), or holds the client's
        /// credentials, which are sent beside it (else a request object seen on its way through the browser would
        /// authenticate a push).
        /// </summary>
        private static List<(string Name, OpenIddictParameter Value)>? ParametersOf(JsonElement payload, string clientId, out string? problem)
        {
            problem = null;
            if (payload.ValueKind != JsonValueKind.Object)
            {
                problem = "The request object's payload is not a JSON object.";
                return null;
            }

            var parameters = new List<(string, OpenIddictParameter)>();
            var namesClient = false;
            foreach (var member in payload.EnumerateObject())
            {
                if (member.Name is Claims.Issuer or Parameters.ClientId)
                {
                    if (!(member.Value.ValueKind == JsonValueKind.String && member.Value.GetString() == clientId))
                    {
                        problem = $"The request object's '{member.Name}' must be the client_id sent beside it.";
                        return null;
                    }

                    namesClient = true;
                }

                if (JwtClaims.Contains(member.Name))
                {
                    continue;
                }

                if (NotInside.Contains(member.Name))
                {
                    problem = $"A request object must not hold '{member.Name}'.";
                    return null;
                }

                if (member.Value.ValueKind == JsonValueKind.Null)
                {
                    continue; // as if absent
                }

                if (ParameterOf(member.Name, member.Value) is not { } value)
                {
                    problem = RepeatedParameters.IsQuotable(member.Name)
                        ? $"The request object's '{member.Name}' has a value no request parameter can have."
                        : "A member of the request object has a value no request parameter can have.";
                    return null;
                }

                parameters.Add((member.Name, value));
            }

            if (!namesClient)
            {
                problem = "The request object must name its client in 'iss' or 'client_id'.";
                return null;
            }

            return parameters;
        }

        private static OpenIddictParameter? ParameterOf(string name, JsonElement value) => value.ValueKind switch
        {
            JsonValueKind.String => new OpenIddictParameter(value.GetString()),
            JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object => new OpenIddictParameter(value.GetRawText()),
            JsonValueKind.Array when RepeatedParameters.Repeatable.Contains(name) && value.EnumerateArray().All(v => v.ValueKind == JsonValueKind.String)
                => new OpenIddictParameter([.. value.EnumerateArray().Select(v => v.GetString())]),
            _ => (OpenIddictParameter?)null,
        };
    }
}

public static class RequestObjectEvents
{
    public static readonly EventId RequestObjectRefused = new(5033, nameof(RequestObjectRefused));
}
