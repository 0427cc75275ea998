using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Clients;

/// <summary>
/// An <c>Authorization: Basic</c> header that is not base64 of <c>client_id:client_secret</c> is a failed client
/// authentication: 401 <c>invalid_client</c>, as RFC 6749 section 5.2 has it for a client that tried the header.
/// OpenIddict answers 400 <c>invalid_request</c>. Checked just before OpenIddict reads the header, the same way it does.
/// </summary>
public static class MalformedBasicCredentials
{
    public static OpenIddictServerBuilder RefuseMalformedBasicCredentialsAsInvalidClient(this OpenIddictServerBuilder server) => server
        .AddEventHandler(Refuse<ExtractTokenRequestContext>())
        .AddEventHandler(Refuse<ExtractIntrospectionRequestContext>())
        .AddEventHandler(Refuse<ExtractRevocationRequestContext>())
        .AddEventHandler(Refuse<ExtractPushedAuthorizationRequestContext>())
        .AddEventHandler(Refuse<ExtractDeviceAuthorizationRequestContext>());

    private static OpenIddictServerHandlerDescriptor Refuse<TContext>() where TContext : BaseValidatingContext =>
        OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
            .UseInlineHandler(context =>
            {
                if (Microsoft.AspNetCore.OpenIddictServerAspNetCoreHelpers.GetHttpRequest(context.Transaction) is { } request
                    && request.Headers.Authorization.ToString() is var header
                    && header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase) && !IsClientIdAndSecret(header.AsSpan("Basic ".Length).Trim()))
                {
                    context.Reject(Errors.InvalidClient, "The Basic credentials are not base64 of client_id:client_secret (RFC 6749 2.3.1).");
                }

                return default;
            })
            .SetOrder(OpenIddictServerAspNetCoreHandlers.ExtractBasicAuthenticationCredentials<TContext>.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

    /// <summary>Decoded on the stack for credentials of usual length (this runs on every Basic-authenticated request).</summary>
    private static bool IsClientIdAndSecret(ReadOnlySpan<char> encoded)
    {
        Span<byte> decoded = encoded.Length <= 1024 ? stackalloc byte[encoded.Length] : new byte[encoded.Length];
        return Convert.TryFromBase64Chars(encoded, decoded, out var length) && decoded[..length].Contains((byte)':');
    }
}
