using IdentityServer.Data;
using IdentityServer.Shared;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OpenIddict.Server;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Dpop;

public static class DpopExtensions
{
    /// <summary>
    /// DPoP (RFC 9449): sender-constrained access tokens, and refresh tokens for public clients, bound to a key the
    /// client proves it holds with each request (<see cref="DpopServerHandlers"/>).
    /// </summary>
    public static WebApplicationBuilder AddDpop(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<DpopOptions>().BindConfiguration(DpopOptions.Section).ValidateSettings(DpopOptions.Section).ValidateOnStart();
        builder.Services.TryAddSingleton<SingleUseRecords>();
        builder.Services.AddSingleton<UsedDpopProofs>();
        builder.Services.AddSingleton<DpopNonces>();
        builder.Services.AddOpenIddict().AddServer(server =>
        {
            // Ours knows key-bound tokens; OpenIddict's knows only certificate-bound ones and fails on any other.
            server.RemoveEventHandler(OpenIddictServerHandlers.Protection.ValidateProofOfPossession.Descriptor)
                .AddEventHandler(DpopServerHandlers.ValidateTokenBinding.Descriptor)
                .AddEventHandler(DpopServerHandlers.ReadTokenRequestProof.Descriptor)
                .AddEventHandler(DpopServerHandlers.RecordTokenRequestProof.Descriptor)
                .AddEventHandler(DpopServerHandlers.ReadPushedRequestProof.Descriptor)
                .AddEventHandler(DpopServerHandlers.ReadUserInfoProof.Descriptor)
                .AddEventHandler(DpopServerHandlers.RecordUserInfoProof.Descriptor)
                .AddEventHandler(DpopServerHandlers.BindIssuedTokens.Descriptor)
                .AddEventHandler(DpopServerHandlers.AnswerDpopTokenType.Descriptor)
                .AddEventHandler(DpopServerHandlers.DescribeBoundTokenInIntrospection.Descriptor)
                .AddEventHandler(DpopServerHandlers.AnswerDpopChallenge.Descriptor)
                .AddEventHandler(DpopServerHandlers.AttachNonce<ApplyTokenResponseContext>.Descriptor)
                .AddEventHandler(DpopServerHandlers.AttachNonce<ApplyPushedAuthorizationResponseContext>.Descriptor)
                .AddEventHandler(DpopServerHandlers.AttachNonce<ApplyUserInfoResponseContext>.Descriptor);

            server.AddEventHandler<ValidateAuthorizationRequestContext>(handler => handler.UseInlineHandler(context =>
            {
                DpopServerHandlers.RefuseMalformedDpopJkt(context);
                return default;
            }).SetOrder(int.MaxValue));
            server.AddEventHandler<ValidatePushedAuthorizationRequestContext>(handler => handler.UseInlineHandler(context =>
            {
                DpopServerHandlers.RefuseMalformedDpopJkt(context);
                return default;
            }).SetOrder(DpopServerHandlers.ReadPushedRequestProof.Descriptor.Order - 1));

            server.AddEventHandler<HandleConfigurationRequestContext>(handler => handler.UseInlineHandler(context =>
            {
                context.Metadata["dpop_signing_alg_values_supported"] = new OpenIddict.Abstractions.OpenIddictParameter([.. DpopProofReader.Algorithms]);
                return default;
            }));
        });
        return builder;
    }
}
