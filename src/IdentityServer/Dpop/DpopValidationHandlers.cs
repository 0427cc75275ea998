using IdentityServer.Admin;
using Microsoft.AspNetCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Validation;
using OpenIddict.Validation.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Validation.OpenIddictValidationEvents;

namespace IdentityServer.Dpop;

/// <summary>
/// DPoP (RFC 9449 section 7) for the admin API, which OpenIddict's validation stack guards: an access token comes as
/// <c>Authorization: DPoP &lt;token&gt;</c> with a proof for the request and that token (<c>ath</c>), checked as userinfo
/// checks one (<see cref="DpopServerHandlers"/>). A bound token is accepted only so, with its key's proof; an unbound
/// token only as a bearer token. Takes the place of OpenIddict's proof-of-possession check, which knows only
/// certificate-bound tokens and fails with a server error on any other binding.
/// </summary>
public static class DpopValidationHandlers
{
    /// <summary>What the current request brought: its checked proof, and whether it used the DPoP scheme.</summary>
    private sealed class Presentation
    {
        public DpopProof? Proof { get; set; }

        public bool WithDpopScheme { get; set; }

        /// <summary>A DPoP-bound token was refused: the challenge names the DPoP scheme, whichever was used.</summary>
        public bool BoundTokenRefused { get; set; }

        public static Presentation Of(OpenIddictValidationTransaction transaction)
        {
            if (Find(transaction) is { } existing)
            {
                return existing;
            }

            var created = new Presentation();
            transaction.SetProperty(typeof(Presentation).FullName!, created);
            return created;
        }

        public static Presentation? Find(OpenIddictValidationTransaction transaction) => transaction.GetProperty<Presentation>(typeof(Presentation).FullName!);
    }

    public static void Register(OpenIddictValidationBuilder validation) =>
        validation.RemoveEventHandler(OpenIddictValidationHandlers.Protection.ValidateProofOfPossession.Descriptor)
            .AddEventHandler(ReadProof.Descriptor)
            .AddEventHandler(ValidateTokenBinding.Descriptor)
            .AddEventHandler(AnswerDpopChallenge.Descriptor);

    /// <summary>A token sent with the DPoP scheme is the request's access token, and its proof is read and checked.</summary>
    public sealed class ReadProof(IOptions<DpopOptions> options, DpopNonces nonces, IOptionsMonitor<OpenIddictServerOptions> server, ILogger<ReadProof> logger)
        : IOpenIddictValidationHandler<ProcessAuthenticationContext>
    {
        public static OpenIddictValidationHandlerDescriptor Descriptor { get; } = OpenIddictValidationHandlerDescriptor.CreateBuilder<ProcessAuthenticationContext>()
            .UseSingletonHandler<ReadProof>()
            .SetOrder(OpenIddictValidationAspNetCoreHandlers.ExtractAccessTokenFromAuthorizationHeader.Descriptor.Order + 1)
            .SetType(OpenIddictValidationHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ProcessAuthenticationContext context)
        {
            if (context.Transaction.GetHttpRequest() is not { } http || DpopServerHandlers.DpopTokenOf(http) is not { } token)
            {
                return default;
            }

            Presentation.Of(context.Transaction).WithDpopScheme = true;
            context.AccessToken = token;
            var proof = DpopServerHandlers.ReadProof(http, DpopServerHandlers.EndpointUrls(server.CurrentValue.Issuer, context.RequestUri, context.BaseUri),
                token, context.Options.TimeProvider.GetUtcNow(), options.Value, nonces, "the admin API", logger, out var error, out var problem);
            if (proof is null)
            {
                context.Reject(error, problem);
                return default;
            }

            Presentation.Of(context.Transaction).Proof = proof;
            nonces.GiveWithAnswer(http.HttpContext);
            return default;
        }
    }

    /// <summary>
    /// Once the token is otherwise valid: a bound token (<c>cnf.jkt</c>) needs the DPoP scheme and a proof by its key, used
    /// once; a token bound some other way is refused; an unbound token must come as a bearer token.
    /// </summary>
    public sealed class ValidateTokenBinding(UsedDpopProofs used, IOptions<DpopOptions> options, ILogger<ValidateTokenBinding> logger)
        : IOpenIddictValidationHandler<ValidateTokenContext>
    {
        public static OpenIddictValidationHandlerDescriptor Descriptor { get; } = OpenIddictValidationHandlerDescriptor.CreateBuilder<ValidateTokenContext>()
            .UseSingletonHandler<ValidateTokenBinding>()
            .SetOrder(OpenIddictValidationHandlers.Protection.ValidateProofOfPossession.Descriptor.Order)
            .SetType(OpenIddictValidationHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ValidateTokenContext context)
        {
            var presentation = Presentation.Find(context.Transaction);
            var boundTo = DpopServerHandlers.ValidateTokenBinding.ThumbprintOf(context.Principal!, out var unknownBinding);
            if (DpopServerHandlers.ValidateTokenBinding.BindingProblem(boundTo, unknownBinding, presentation?.WithDpopScheme == true, presentation?.Proof,
                    resource: true) is { } problem)
            {
                logger.LogWarning(AdminEvents.AccessRefused, "Admin access refused for {Subject}: {Problem}", context.Principal!.GetClaim(Claims.Subject) ?? "(none)", problem);
                if (boundTo is not null || unknownBinding)
                {
                    Presentation.Of(context.Transaction).BoundTokenRefused = true;
                }

                context.Reject(Errors.InvalidToken, problem);
                return;
            }

            if (presentation?.Proof is { } proof
                && await DpopServerHandlers.RecordUseAsync(proof, used, options.Value, "the admin API", logger, context.CancellationToken) is { } replayed)
            {
                context.Reject(DpopServerHandlers.InvalidDpopProof, replayed);
            }
        }
    }

    /// <summary>
    /// A refusal of a request that used the DPoP scheme, or of a bound token, is a DPoP challenge (RFC 9449 section 7.1):
    /// the scheme and the algorithms it accepts in <c>WWW-Authenticate</c>, 401 for a refused proof as for a refused
    /// token, and with nonces required a fresh one in <c>DPoP-Nonce</c>.
    /// </summary>
    public sealed class AnswerDpopChallenge(DpopNonces nonces) : IOpenIddictValidationHandler<ProcessChallengeContext>
    {
        public static OpenIddictValidationHandlerDescriptor Descriptor { get; } = OpenIddictValidationHandlerDescriptor.CreateBuilder<ProcessChallengeContext>()
            .UseSingletonHandler<AnswerDpopChallenge>()
            .SetOrder(OpenIddictValidationAspNetCoreHandlers.AttachWwwAuthenticateHeader<ProcessChallengeContext>.Descriptor.Order + 1)
            .SetType(OpenIddictValidationHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ProcessChallengeContext context)
        {
            if (string.IsNullOrEmpty(context.Response.Error) || Presentation.Find(context.Transaction) is not { } presentation
                || !(presentation.WithDpopScheme || presentation.BoundTokenRefused) || context.Transaction.GetHttpRequest()?.HttpContext is not { } http)
            {
                return default;
            }

            var description = context.Response.ErrorDescription is { Length: > 0 } text ? $", error_description=\"{text.Replace("\"", "\\\"")}\"" : "";
            http.Response.Headers.WWWAuthenticate = $"{DpopServerHandlers.AuthorizationScheme} error=\"{context.Response.Error}\"{description}, " +
                $"algs=\"{string.Join(' ', DpopProofReader.Algorithms)}\"";
            var proofRefused = context.Response.Error is DpopServerHandlers.InvalidDpopProof or DpopServerHandlers.UseDpopNonce;
            if (proofRefused)
            {
                http.Response.StatusCode = StatusCodes.Status401Unauthorized;
            }

            nonces.GiveWithAnswer(http, refusedForProof: proofRefused);
            return default;
        }
    }
}
