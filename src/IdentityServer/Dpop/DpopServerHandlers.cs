using System.Security.Claims;
using System.Text.Json.Nodes;
using IdentityServer.Clients;
using Microsoft.AspNetCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Dpop;

/// <summary>
/// DPoP (RFC 9449) on OpenIddict's pipeline, which knows only certificate-bound tokens: the proof a request carries is
/// read into the transaction (<see cref="DpopRequest"/>), issued tokens are bound to its key (<c>cnf.jkt</c>), and a bound
/// token is accepted only with a proof made by that key.
/// </summary>
public static class DpopServerHandlers
{
    public const string InvalidDpopProof = "invalid_dpop_proof";

    /// <summary>The proof must carry the nonce of the response's <c>DPoP-Nonce</c> header (RFC 9449 sections 8 and 9).</summary>
    public const string UseDpopNonce = "use_dpop_nonce";

    public const string NonceHeaderName = "DPoP-Nonce";

    /// <summary>The authorization request parameter that binds the code to a key (RFC 9449 section 10).</summary>
    public const string DpopJktParameter = "dpop_jkt";

    public const string HeaderName = "DPoP";

    public const string AuthorizationScheme = "DPoP";

    /// <summary>The access token of an <c>Authorization: DPoP &lt;token&gt;</c> header (RFC 9449 section 7.1); null for another scheme or none.</summary>
    public static string? DpopTokenOf(HttpRequest request) =>
        request.Headers.Authorization.ToString() is var header && header.StartsWith(AuthorizationScheme + " ", StringComparison.OrdinalIgnoreCase)
            ? header[(AuthorizationScheme.Length + 1)..].Trim()
            : null;

    /// <summary>What the current request brought: its checked proof, and whether it presented its access token with the DPoP scheme.</summary>
    public sealed class DpopRequest
    {
        public DpopProof? Proof { get; set; }

        public bool PresentedWithDpopScheme { get; set; }

        /// <summary>A DPoP-bound access token was refused at userinfo: the challenge names the DPoP scheme, whichever was used.</summary>
        public bool BoundTokenRefused { get; set; }

        public static DpopRequest Of(OpenIddictServerTransaction transaction)
        {
            if (transaction.GetProperty<DpopRequest>(typeof(DpopRequest).FullName!) is { } existing)
            {
                return existing;
            }

            var created = new DpopRequest();
            transaction.SetProperty(typeof(DpopRequest).FullName!, created);
            return created;
        }

        public static DpopRequest? Find(OpenIddictServerTransaction transaction) => transaction.GetProperty<DpopRequest>(typeof(DpopRequest).FullName!);
    }

    /// <summary>
    /// Reads the request's one <c>DPoP</c> header, if any (or, <paramref name="required"/>, the one it must have), for a
    /// request to the current endpoint with <paramref name="accessToken"/> (resource requests), into the transaction.
    /// False, with the context rejected as <see cref="ReadProof"/> says, when the proof is missing or refused.
    /// </summary>
    private static bool TryReadProof(BaseValidatingContext context, DpopOptions options, DpopNonces nonces, string? accessToken, ILogger logger,
        bool required = false)
    {
        var http = context.Transaction.GetHttpRequest()!;
        if (http.Headers[HeaderName].Count == 0 && !required)
        {
            return true;
        }

        var proof = ReadProof(http, EndpointUrls(context), accessToken, context.Options.TimeProvider.GetUtcNow(), options, nonces, context.EndpointType.ToString(),
            logger, out var error, out var problem);
        if (proof is null)
        {
            context.Reject(error, problem);
            return false;
        }

        DpopRequest.Of(context.Transaction).Proof = proof;
        return true;
    }

    /// <summary>
    /// Reads and checks the request's one <c>DPoP</c> header for a request to one of <paramref name="targets"/> with
    /// <paramref name="accessToken"/> (resource requests): the proof, or null with the error (<c>invalid_dpop_proof</c>
    /// when there is none, several, or one that fails a check; <c>use_dpop_nonce</c> when nonces are required and it
    /// carries no current one) and what failed, logged for <paramref name="endpoint"/>. Userinfo, the token and PAR
    /// endpoints and the admin API share it.
    /// </summary>
    internal static DpopProof? ReadProof(HttpRequest http, IEnumerable<Uri> targets, string? accessToken, DateTimeOffset now, DpopOptions options,
        DpopNonces nonces, string endpoint, ILogger logger, out string error, out string problem)
    {
        var values = http.Headers[HeaderName];
        string? readProblem = values.Count == 0 ? "An access token sent with the DPoP scheme needs a DPoP proof." : "Send one DPoP header, not several.";
        var proof = values.Count != 1 ? null : DpopProofReader.Read(values[0]!, http.Method, targets, accessToken, now, options.ProofLifetime,
            options.ClockSkew, out readProblem);
        if (proof is null)
        {
            (error, problem) = (InvalidDpopProof, readProblem!);
            logger.LogInformation(DpopEvents.ProofRefused, "DPoP proof refused at {Endpoint}: {Problem}", endpoint, problem);
            return null;
        }

        if (nonces.Required && !nonces.IsCurrent(proof.Nonce))
        {
            logger.LogInformation(DpopEvents.NonceRequired, "DPoP proof refused at {Endpoint}: {Problem} nonce", endpoint,
                proof.Nonce is null ? "no" : "an unknown or expired");
            (error, problem) = (UseDpopNonce, proof.Nonce is null
                ? "The DPoP proof needs the nonce given in the DPoP-Nonce header."
                : "The DPoP proof's nonce is unknown or has expired: use the one given in the DPoP-Nonce header.");
            return null;
        }

        (error, problem) = ("", "");
        return proof;
    }

    /// <summary>
    /// The URL a proof must name for this request: with a configured issuer, the endpoint's URL under it, as discovery
    /// gives it (a proxy may put it in front of the request's own address); else the URL the request was sent to. Not
    /// the request's own URL beside the issuer's: its host is the request's Host header, which whoever sends the request
    /// chooses, so a proof made for another server would pass here with that server's name in the header.
    /// </summary>
    private static IEnumerable<Uri> EndpointUrls(BaseContext context) => EndpointUrls(context.Options.Issuer, context.RequestUri, context.BaseUri);

    /// <summary>
    /// <see cref="EndpointUrls(BaseContext)"/> from its parts: the configured <paramref name="issuer"/>, if any, and the
    /// request's URL and base URL (its path base) as OpenIddict resolved them. The admin API's proofs use it too.
    /// </summary>
    internal static IEnumerable<Uri> EndpointUrls(Uri? issuer, Uri? requestUri, Uri? requestBase)
    {
        if (issuer is null)
        {
            if (requestUri is not null)
            {
                yield return requestUri;
            }

            yield break;
        }

        if (requestUri is null)
        {
            yield break;
        }

        var root = issuer.AbsoluteUri.EndsWith('/') ? issuer : new Uri(issuer.AbsoluteUri + "/");
        var path = requestUri.AbsolutePath.TrimStart('/');
        if (requestBase is not null && requestUri.AbsolutePath.StartsWith(requestBase.AbsolutePath, StringComparison.Ordinal))
        {
            path = requestUri.AbsolutePath[requestBase.AbsolutePath.Length..].TrimStart('/');
        }

        yield return new Uri(root, path);
    }

    /// <summary>Records the proof's single use; false, with the context rejected, if it was used before.</summary>
    private static async ValueTask<bool> TryRecordUseAsync(BaseValidatingContext context, UsedDpopProofs used, DpopOptions options, ILogger logger)
    {
        if (DpopRequest.Find(context.Transaction)?.Proof is not { } proof)
        {
            return true;
        }

        if (await RecordUseAsync(proof, used, options, context.EndpointType.ToString(), logger, context.CancellationToken) is not { } problem)
        {
            return true;
        }

        context.Reject(InvalidDpopProof, problem);
        return false;
    }

    /// <summary>
    /// Records the proof's single use, kept while its <c>iat</c> could still pass; what is wrong (logged for
    /// <paramref name="endpoint"/>) if it was used before, else null. The server's endpoints and the admin API share it.
    /// </summary>
    internal static async ValueTask<string?> RecordUseAsync(DpopProof proof, UsedDpopProofs used, DpopOptions options, string endpoint, ILogger logger,
        CancellationToken ct)
    {
        if (await used.TryRecordAsync(proof, proof.IssuedAt + options.ProofLifetime + options.ClockSkew * 2, ct))
        {
            return null;
        }

        logger.LogWarning(DpopEvents.ProofReplayed, "DPoP proof refused at {Endpoint}: it was already used", endpoint);
        return "The DPoP proof was already used: make a new one for each request.";
    }

    /// <summary>Token endpoint: the proof is read before anything else is checked.</summary>
    public sealed class ReadTokenRequestProof(IOptions<DpopOptions> options, DpopNonces nonces, ILogger<ReadTokenRequestProof> logger) : IOpenIddictServerHandler<ValidateTokenRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateTokenRequestContext>()
            .UseSingletonHandler<ReadTokenRequestProof>()
            .SetOrder(OpenIddictServerHandlers.Exchange.ValidateGrantType.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ValidateTokenRequestContext context)
        {
            TryReadProof(context, options.Value, nonces, accessToken: null, logger);
            return default;
        }
    }

    /// <summary>
    /// Token endpoint, once the client and its grant are validated (a grant bound to a key has checked the proof's key
    /// then): a client registered with <c>dpop_bound_access_tokens</c> must send a proof, and a proof is used once.
    /// </summary>
    /// <remarks>
    /// A singleton that resolves the request's client manager only when it needs it: it runs on every token request,
    /// and a scoped handler is built for each one, proof or not.
    /// </remarks>
    public sealed class RecordTokenRequestProof(UsedDpopProofs used, IOptions<DpopOptions> options, ILogger<RecordTokenRequestProof> logger)
        : IOpenIddictServerHandler<ValidateTokenRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateTokenRequestContext>()
            .UseSingletonHandler<RecordTokenRequestProof>()
            .SetOrder(OpenIddictServerHandlers.Exchange.ValidateAuthentication.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ValidateTokenRequestContext context)
        {
            if (DpopRequest.Find(context.Transaction)?.Proof is null)
            {
                if (!string.IsNullOrEmpty(context.ClientId)
                    && (await StoredClientProperties.OfClientAsync(StoredClientProperties.ApplicationsOf(context), context.ClientId, context.CancellationToken))
                        ?.DpopBoundAccessTokens == true)
                {
                    logger.LogInformation(DpopEvents.ProofRefused, "Token request from {ClientId} refused: its tokens are DPoP-bound and it sent no proof", context.ClientId);
                    context.Reject(InvalidDpopProof, "This client's tokens are DPoP-bound: send a DPoP proof.");
                }

                return;
            }

            await TryRecordUseAsync(context, used, options.Value, logger);
        }
    }

    /// <summary>
    /// Pushed authorization requests (RFC 9449 section 10.1): a proof binds the code to its key, as <c>dpop_jkt</c> would,
    /// which it must then match. The parameter is kept with the pushed request, so the code is bound at authorize.
    /// </summary>
    public sealed class ReadPushedRequestProof(UsedDpopProofs used, IOptions<DpopOptions> options, DpopNonces nonces, ILogger<ReadPushedRequestProof> logger)
        : IOpenIddictServerHandler<ValidatePushedAuthorizationRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidatePushedAuthorizationRequestContext>()
            .UseSingletonHandler<ReadPushedRequestProof>()
            .SetOrder(OpenIddictServerHandlers.Authentication.ValidatePushedAuthentication.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ValidatePushedAuthorizationRequestContext context)
        {
            if (!TryReadProof(context, options.Value, nonces, accessToken: null, logger) || !await TryRecordUseAsync(context, used, options.Value, logger)
                || DpopRequest.Find(context.Transaction)?.Proof is not { } proof)
            {
                return;
            }

            var named = (string?)context.Request[DpopJktParameter];
            if (named is not null && named != proof.Thumbprint)
            {
                context.Reject(InvalidDpopProof, "The dpop_jkt parameter names another key than the DPoP proof's.");
                return;
            }

            context.Request[DpopJktParameter] = proof.Thumbprint;
        }
    }

    /// <summary>A <c>dpop_jkt</c> must be a SHA-256 thumbprint, base64url (43 characters), at authorize and at PAR.</summary>
    public static void RefuseMalformedDpopJkt(BaseValidatingContext context)
    {
        if (context.Transaction.Request?.GetParameter(DpopJktParameter) is { } parameter
            && !Shared.Base64UrlText.IsSha256((string?)parameter))
        {
            context.Reject(Errors.InvalidRequest, "The dpop_jkt parameter must be a SHA-256 JWK thumbprint, base64url-encoded (43 characters).");
        }
    }

    /// <summary>
    /// Userinfo (a resource of this server): an access token presented with the <c>DPoP</c> scheme (RFC 9449 section 7.1)
    /// comes with a proof for this request and this token (<c>ath</c>).
    /// </summary>
    public sealed class ReadUserInfoProof(IOptions<DpopOptions> options, DpopNonces nonces, ILogger<ReadUserInfoProof> logger) : IOpenIddictServerHandler<ExtractUserInfoRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ExtractUserInfoRequestContext>()
            .UseSingletonHandler<ReadUserInfoProof>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.ExtractAccessToken<ExtractUserInfoRequestContext>.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ExtractUserInfoRequestContext context)
        {
            if (DpopTokenOf(context.Transaction.GetHttpRequest()!) is not { } token)
            {
                return default;
            }

            DpopRequest.Of(context.Transaction).PresentedWithDpopScheme = true;
            if (context.Request is null)
            {
                return default; // nothing extracted: OpenIddict refuses the request itself
            }

            // A token also in the form or the URI was refused before (UserInfoEndpoint.RefuseUserInfoTokensSentTwiceOrInTheUri).
            context.Request.AccessToken = token;
            TryReadProof(context, options.Value, nonces, token, logger, required: true);
            return default;
        }
    }

    /// <summary>Userinfo, once the token is validated (its key checked): the proof is used once.</summary>
    public sealed class RecordUserInfoProof(UsedDpopProofs used, IOptions<DpopOptions> options, ILogger<RecordUserInfoProof> logger)
        : IOpenIddictServerHandler<ValidateUserInfoRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateUserInfoRequestContext>()
            .UseSingletonHandler<RecordUserInfoProof>()
            .SetOrder(OpenIddictServerHandlers.UserInfo.ValidateAuthentication.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ValidateUserInfoRequestContext context) => await TryRecordUseAsync(context, used, options.Value, logger);
    }

    /// <summary>
    /// Takes the place of OpenIddict's own proof-of-possession check, which knows only certificate thumbprints and fails
    /// with a server error on any other <c>cnf</c>. A token bound to a key (<c>cnf.jkt</c>: an access token, a public
    /// client's refresh token, a code asked for with <c>dpop_jkt</c>) is accepted only with a proof by that key, and at
    /// userinfo only with the DPoP scheme; a token not bound to a key is refused with that scheme. Only those kinds of
    /// token are looked at (not, say, a client assertion). Not run where a client presents a token it holds for someone
    /// else: introspection and revocation (OpenIddict leaves it out there), and token exchange by a client the token
    /// was not issued to, an API trading the token it received, whose key it cannot hold (only a confidential client,
    /// authenticated, may exchange). A client exchanging its own bound token proves its key like anywhere else.
    /// </summary>
    public sealed class ValidateTokenBinding(ILogger<ValidateTokenBinding> logger) : IOpenIddictServerHandler<ValidateTokenContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateTokenContext>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireTokenProofOfPossessionValidationEnabled>()
            .UseSingletonHandler<ValidateTokenBinding>()
            .SetOrder(OpenIddictServerHandlers.Protection.ValidateProofOfPossession.Descriptor.Order)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        private static readonly string[] BindableTypes = [TokenTypeIdentifiers.AccessToken, TokenTypeIdentifiers.RefreshToken, AuthorizationCodeType];

        private const string AuthorizationCodeType = "urn:openiddict:params:oauth:token-type:authorization_code";

        public ValueTask HandleAsync(ValidateTokenContext context)
        {
            var principal = context.Principal!;
            if (!BindableTypes.Any(principal.HasTokenType) || HeldForSomeoneElse(context, principal))
            {
                return default;
            }

            var request = DpopRequest.Find(context.Transaction);
            var boundTo = ThumbprintOf(principal, out var unknownBinding);
            var error = context.EndpointType == OpenIddictServerEndpointType.Token ? Errors.InvalidGrant : Errors.InvalidToken;
            // At userinfo, a resource, a proof is read only with the DPoP scheme (ReadUserInfoProof).
            var problem = BindingProblem(boundTo, unknownBinding, request?.PresentedWithDpopScheme == true, request?.Proof,
                resource: context.EndpointType == OpenIddictServerEndpointType.UserInfo);
            if (problem is not null)
            {
                logger.LogInformation(DpopEvents.BindingRefused, "Token refused at {Endpoint}: {Problem}", context.EndpointType, problem);
                if (boundTo is not null)
                {
                    DpopRequest.Of(context.Transaction).BoundTokenRefused = true;
                }

                context.Reject(error, problem);
            }

            return default;
        }

        /// <summary>A token exchange's subject token, presented by a client it was not issued to (the API it names; RFC 9068 client_id).</summary>
        private static bool HeldForSomeoneElse(ValidateTokenContext context, ClaimsPrincipal token) =>
            context.EndpointType == OpenIddictServerEndpointType.Token && context.Transaction.Request is { } request && request.IsTokenExchangeGrantType()
            && !string.IsNullOrEmpty(request.ClientId) && token.GetClaim(Claims.ClientId) != request.ClientId;

        /// <summary>
        /// Why a token bound to <paramref name="boundTo"/> (or to nothing, or in an <paramref name="unknownBinding"/> way)
        /// may not be used with this request's <paramref name="proof"/>, if any: null when it may. At a
        /// <paramref name="resource"/> (userinfo, the admin API) a bound token comes with the DPoP scheme, and an unbound
        /// one without it. The server's endpoints and the admin API share it.
        /// </summary>
        internal static string? BindingProblem(string? boundTo, bool unknownBinding, bool withDpopScheme, DpopProof? proof, bool resource) =>
            unknownBinding ? "The token is bound in a way this server does not support."
            : boundTo is null ? (withDpopScheme ? "The access token is not DPoP-bound: send it with the Bearer scheme." : null)
            : proof is null ? (resource
                ? "The access token is DPoP-bound: send it with the DPoP scheme and a proof."
                : "The token is DPoP-bound: send a DPoP proof made with its key.")
            : proof.Thumbprint != boundTo ? "The token is bound to another key than the DPoP proof's."
            : null;

        /// <summary>The key a token is bound to (<c>cnf.jkt</c>); null when it is not bound, or bound otherwise (<paramref name="unknown"/>).</summary>
        internal static string? ThumbprintOf(ClaimsPrincipal principal, out bool unknown)
        {
            unknown = false;
            if (principal.GetClaim(Claims.Confirmation) is not { Length: > 0 } confirmation)
            {
                return null;
            }

            try
            {
                if (JsonNode.Parse(confirmation) is JsonObject cnf && cnf["jkt"] is JsonValue jkt && jkt.TryGetValue<string>(out var thumbprint))
                {
                    return thumbprint;
                }
            }
            catch (System.Text.Json.JsonException)
            {
            }

            unknown = true;
            return null;
        }
    }

    /// <summary>
    /// Binds what this request issues to the proof's key: every access token, and a public client's refresh token (RFC
    /// 9449 section 5; a confidential client's refresh token is held by its authentication already). At authorize, the
    /// code is bound to the <c>dpop_jkt</c> key, which the token request's proof must then match.
    /// </summary>
    public sealed class BindIssuedTokens : IOpenIddictServerHandler<ProcessSignInContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .UseSingletonHandler<BindIssuedTokens>()
            .SetOrder(OpenIddictServerHandlers.PrepareUserCodePrincipal.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ProcessSignInContext context)
        {
            if (context.EndpointType == OpenIddictServerEndpointType.Authorization)
            {
                if (context.AuthorizationCodePrincipal is { } code && (string?)context.Request?[DpopJktParameter] is { Length: > 0 } jkt)
                {
                    Bind(code, jkt);
                }

                return;
            }

            if (context.EndpointType != OpenIddictServerEndpointType.Token || DpopRequest.Find(context.Transaction)?.Proof is not { } proof)
            {
                return;
            }

            if (context.AccessTokenPrincipal is { } access)
            {
                Bind(access, proof.Thumbprint);
            }

            if (context.IssuedTokenPrincipal is { } issued && context.IssuedTokenType == TokenTypeIdentifiers.AccessToken)
            {
                Bind(issued, proof.Thumbprint);
            }

            var applications = StoredClientProperties.ApplicationsOf(context);
            if (context.RefreshTokenPrincipal is { } refresh && !string.IsNullOrEmpty(context.ClientId)
                && await applications.FindByClientIdAsync(context.ClientId, context.CancellationToken) is { } client
                && await applications.HasClientTypeAsync(client, ClientTypes.Public, context.CancellationToken))
            {
                Bind(refresh, proof.Thumbprint);
            }
        }

        private static void Bind(ClaimsPrincipal principal, string thumbprint) =>
            principal.SetClaim(Claims.Confirmation, new JsonObject { ["jkt"] = thumbprint });
    }

    /// <summary>A bound access token is answered with <c>token_type</c> DPoP (RFC 9449 section 5), not Bearer.</summary>
    public sealed class AnswerDpopTokenType : IOpenIddictServerHandler<ProcessSignInContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .UseSingletonHandler<AnswerDpopTokenType>()
            .SetOrder(OpenIddictServerHandlers.AttachSignInParameters.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ProcessSignInContext context)
        {
            var bound = context.IncludeAccessToken ? context.AccessTokenPrincipal
                : context.IncludeIssuedToken && context.IssuedTokenType == TokenTypeIdentifiers.AccessToken ? context.IssuedTokenPrincipal
                : null;
            if (bound?.HasClaim(Claims.Confirmation) == true)
            {
                context.Response.TokenType = AuthorizationScheme;
            }

            return default;
        }
    }

    /// <summary>Introspection names a DPoP-bound token's type (RFC 9449 section 6.2) beside its <c>cnf</c>, which OpenIddict returns.</summary>
    public sealed class DescribeBoundTokenInIntrospection : IOpenIddictServerHandler<HandleIntrospectionRequestContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<HandleIntrospectionRequestContext>()
            .UseSingletonHandler<DescribeBoundTokenInIntrospection>()
            .SetOrder(OpenIddictServerHandlers.Introspection.AttachMetadataClaims.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(HandleIntrospectionRequestContext context)
        {
            if (context.Confirmation?["jkt"] is not null)
            {
                context.TokenType = AuthorizationScheme;
            }

            return default;
        }
    }

    /// <summary>
    /// Userinfo errors for a request that used the DPoP scheme are DPoP challenges (RFC 9449 section 7.1): the scheme and
    /// the algorithms it accepts in <c>WWW-Authenticate</c>, and 401 for a refused proof, as for a refused token.
    /// </summary>
    public sealed class AnswerDpopChallenge : IOpenIddictServerHandler<ApplyUserInfoResponseContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyUserInfoResponseContext>()
            .UseSingletonHandler<AnswerDpopChallenge>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.AttachWwwAuthenticateHeader<ApplyUserInfoResponseContext>.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ApplyUserInfoResponseContext context)
        {
            if (string.IsNullOrEmpty(context.Error) || DpopRequest.Find(context.Transaction) is not { } dpop
                || !(dpop.PresentedWithDpopScheme || dpop.BoundTokenRefused) || context.Transaction.GetHttpRequest()?.HttpContext.Response is not { } response)
            {
                return default;
            }

            var algorithms = $"algs=\"{string.Join(' ', DpopProofReader.Algorithms)}\"";
            var challenge = response.Headers.WWWAuthenticate.ToString();
            response.Headers.WWWAuthenticate = challenge.StartsWith("Bearer", StringComparison.Ordinal)
                ? $"{AuthorizationScheme}{challenge["Bearer".Length..]}{(challenge.Length > "Bearer".Length ? "," : "")} {algorithms}"
                : $"{AuthorizationScheme} error=\"{context.Error}\", {algorithms}";
            if (context.Error is InvalidDpopProof or UseDpopNonce)
            {
                response.StatusCode = StatusCodes.Status401Unauthorized;
            }

            return default;
        }
    }

    /// <summary>
    /// With nonces required, the token, PAR and userinfo endpoints give a fresh nonce (<c>DPoP-Nonce</c>, RFC 9449 section
    /// 8.2) in every answer to a request with a proof, and to one refused for want of a proof, so the client's next proof
    /// can carry it. oidc-client-ts reads it from error answers only (<c>use_dpop_nonce</c>), others from any answer.
    /// </summary>
    public sealed class AttachNonce<TContext>(DpopNonces nonces) : IOpenIddictServerHandler<TContext> where TContext : BaseRequestContext
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .UseSingletonHandler<AttachNonce<TContext>>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<TContext>.Descriptor.Order + 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(TContext context)
        {
            if (context.Transaction.GetHttpRequest() is { } request)
            {
                nonces.GiveWithAnswer(request.HttpContext, refusedForProof: context.Transaction.Response?.Error is InvalidDpopProof or UseDpopNonce);
            }

            return default;
        }
    }
}

public static class DpopEvents
{
    public static readonly EventId ProofRefused = new(5024, nameof(ProofRefused));
    public static readonly EventId ProofReplayed = new(5025, nameof(ProofReplayed));
    public static readonly EventId BindingRefused = new(5026, nameof(BindingRefused));
    public static readonly EventId NonceRequired = new(5032, nameof(NonceRequired));
}
