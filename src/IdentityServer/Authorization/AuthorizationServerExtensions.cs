using IdentityServer.Data;
using IdentityServer.Shared;
using Microsoft.Extensions.Options;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Authorization;

public static class AuthorizationServerExtensions
{
    /// <summary>
    /// OpenIddict's server in pass-through mode: it validates every protocol request and writes every response;
    /// our handlers only decide who the user is, what they consented to and which claims go where.
    /// </summary>
    public static WebApplicationBuilder AddAuthorizationServer(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<TokenOptions>().BindConfiguration(TokenOptions.Section).ValidateSettings(TokenOptions.Section).ValidateOnStart();
        builder.Services.AddHttpContextAccessor();
        builder.Services.AddScoped<ServerAudience>();
        var tokens = builder.Configuration.GetSection(TokenOptions.Section).Get<TokenOptions>() ?? new TokenOptions();
        CheckIssuer(tokens.Issuer);
        var allowHttp = builder.Environment.IsDevelopment();

        builder.Services.AddOpenIddict()
            .AddCore(core => core.UseEntityFrameworkCore().UseDbContext<ApplicationDbContext>())
            .AddServer(server =>
            {
                server.SetAuthorizationEndpointUris(Relative(ProtocolRoutes.Authorize))
                    .SetPushedAuthorizationEndpointUris(Relative(ProtocolRoutes.PushedAuthorization))
                    .SetTokenEndpointUris(Relative(ProtocolRoutes.Token))
                    .SetUserInfoEndpointUris(Relative(ProtocolRoutes.UserInfo))
                    .SetEndSessionEndpointUris(Relative(ProtocolRoutes.EndSession))
                    .SetIntrospectionEndpointUris(Relative(ProtocolRoutes.Introspection))
                    .SetRevocationEndpointUris(Relative(ProtocolRoutes.Revocation))
                    .SetDeviceAuthorizationEndpointUris(Relative(ProtocolRoutes.DeviceAuthorization))
                    .SetEndUserVerificationEndpointUris(Relative(ProtocolRoutes.Verification))
                    .SetJsonWebKeySetEndpointUris(Relative(ProtocolRoutes.Jwks));

                server.AllowAuthorizationCodeFlow()
                    .AllowRefreshTokenFlow()
                    .AllowClientCredentialsFlow()
                    .AllowDeviceAuthorizationFlow()
                    .AllowAccessTokenExchange();
                // PKCE is required per client (Clients/ClientDescriptorMapper: every client unless a confidential
                // one opts out with require_pkce false), which OpenIddict checks at authorize, PAR and token.

                server.RegisterScopes(Scopes.OpenId, Scopes.Profile, Scopes.Email, Scopes.Roles, Scopes.OfflineAccess);
                server.RegisterClaims(Claims.Subject, Claims.Name, Claims.PreferredUsername, Claims.Email,
                    Claims.EmailVerified, Claims.Role, Claims.AuthenticationTime, Claims.AuthenticationMethodReference,
                    Claims.AuthenticationContextReference, IdentityServer.Accounts.SessionClaims.SessionId);

                // acr_values_supported (the levels of Accounts/AuthenticationLevels), back- and front-channel logout, and the form_post page's CSP.
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.HandleConfigurationRequestContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        context.Metadata[Metadata.AcrValuesSupported] = new OpenIddict.Abstractions.OpenIddictParameter([.. IdentityServer.Accounts.AuthenticationLevels.Supported]);
                        // OpenID Connect Back-Channel Logout 1.0 (Logout/BackChannelLogoutSender): sid in identity and logout tokens.
                        context.Metadata["backchannel_logout_supported"] = true;
                        context.Metadata["backchannel_logout_session_supported"] = true;
                        // OpenID Connect Front-Channel Logout 1.0 (Logout/FrontChannelLogout): iss and sid on every frame.
                        context.Metadata["frontchannel_logout_supported"] = true;
                        context.Metadata["frontchannel_logout_session_supported"] = true;
                        DescribeClientAuthentication(context);
                        return default;
                    }).SetOrder(OpenIddict.Server.OpenIddictServerHandlers.Discovery.AttachClientAuthenticationMethods.Descriptor.Order + 1));
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ApplyAuthorizationResponseContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        if (context.ResponseMode == ResponseModes.FormPost && !string.IsNullOrEmpty(context.RedirectUri)
                            && Microsoft.AspNetCore.OpenIddictServerAspNetCoreHelpers.GetHttpRequest(context.Transaction) is { } httpRequest)
                        {
                            IdentityServer.Hosting.SecurityHeaders.AllowFormPostTo(httpRequest.HttpContext, context.RedirectUri);
                        }

                        return default;
                    }).SetOrder(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers.Authentication.ProcessFormPostResponse.Descriptor.Order - 1));

                // max_age is a number of seconds (OpenID Connect Core 3.1.2.1), and an S256 code_challenge is a SHA-256 in
                // base64url (RFC 7636 4.2); anything else is refused rather than ignored, which would have let a client
                // believe the session's age was checked, or given it a code no verifier could ever redeem. A response_type
                // naming a value twice ("code code") is refused too: OpenIddict validates it as the code flow but then finds
                // no response mode for it, and the signed-in user's answer was a 500. Last, so that
                // the error goes back to the client's validated redirect URI. A pushed request is checked when it is
                // pushed, so the client hears of it then.
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ValidateAuthorizationRequestContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        RefuseMalformedParameters(context);
                        return default;
                    }).SetOrder(int.MaxValue));
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ValidatePushedAuthorizationRequestContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        RefuseMalformedParameters(context);
                        return default;
                    }).SetOrder(int.MaxValue));

                // OpenIddict checks resource (RFC 8707) at the authorization and token endpoints only; a device's was
                // accepted, then never used. Refused here as there: malformed, invalid_request; not a registered resource
                // (none is: tokens' audiences come from their scopes), invalid_target.
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ValidateDeviceAuthorizationRequestContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        RefuseResources(context);
                        return default;
                    }).SetOrder(int.MaxValue));

                // A repeated parameter is refused, not silently dropped (RFC 6749 3.1); scope problems are
                // invalid_scope, as RFC 6749 names them, where OpenIddict says invalid_request or invalid_grant.
                server.RefuseRepeatedParameters().RefuseScopesAsInvalidScope();

                // Signed authorization requests (JAR, RFC 9101), which OpenIddict does not read: verified and unpacked first.
                server.AcceptRequestObjects();

                // An introspection answer describes a token and its user: no cache may keep it (OpenIddict says so for
                // token responses only).
                server.AddEventHandler(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers
                    .AttachCacheControlHeader<OpenIddict.Server.OpenIddictServerEvents.ApplyIntrospectionResponseContext>.Descriptor);

                // A token request without any client authentication is invalid_client (401), as RFC 6749 5.2 names
                // "no client authentication included": for client credentials always, for the other grants when it does
                // not even name its client (a public client names itself with client_id), as refresh and token exchange
                // requests are answered already. OpenIddict says invalid_request (for a missing client_id too, hence
                // before its check of that).
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ValidateTokenRequestContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        var clientCredentials = OpenIddict.Abstractions.OpenIddictExtensions.IsClientCredentialsGrantType(context.Request);
                        if ((clientCredentials || string.IsNullOrEmpty(context.Request.ClientId)) && string.IsNullOrEmpty(context.Request.ClientSecret)
                            && string.IsNullOrEmpty(context.Request.ClientAssertion) && string.IsNullOrEmpty(context.Request.ClientAssertionType)
                            && context.Transaction.RemoteCertificate is null)
                        {
                            context.Reject(Errors.InvalidClient, clientCredentials
                                ? "The client credentials grant needs client authentication."
                                : "The request names no client: send client_id, or authenticate the client.");
                        }

                        return default;
                    }).SetOrder(OpenIddict.Server.OpenIddictServerHandlers.Exchange.ValidateClientIdParameter.Descriptor.Order - 1));

                // A scope sent with a code or a device code is ignored, as RFC 6749 3.2 has a token endpoint ignore the
                // parameters it does not define for a request (the scopes are the grant's): OpenIddict refuses it as
                // invalid_request, which some client libraries that send it anyway (WordPress's, OidcProxy.Net) cannot get past.
                server.AddEventHandler<OpenIddict.Server.OpenIddictServerEvents.ValidateTokenRequestContext>(handler =>
                    handler.UseInlineHandler(context =>
                    {
                        if (OpenIddict.Abstractions.OpenIddictExtensions.IsAuthorizationCodeGrantType(context.Request)
                            || OpenIddict.Abstractions.OpenIddictExtensions.IsDeviceCodeGrantType(context.Request))
                        {
                            context.Request.Scope = null;
                        }

                        return default;
                    }).SetOrder(OpenIddict.Server.OpenIddictServerHandlers.Exchange.ValidateScopeParameter.Descriptor.Order - 1));

                server.NarrowRefreshedTokens().LeaveOurErrorsWithoutErrorUri();
                server.RequireTokenParties();
                server.NameTheServerWhenNoApi();
                server.RevokeGrantWithItsRefreshToken();
                server.RevokeGrantOfReplayedTokens();
                server.PaceDevicePolls();
                server.AcceptBodilessUserInfoPosts().RefuseUserInfoTokensSentTwiceOrInTheUri();

                // Introspection is a POST (RFC 7662 2.1), as revocation is: a GET would carry the token in the URI,
                // which logs keep. OpenIddict takes both.
                server.RemoveEventHandler(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers
                    .ExtractGetOrPostRequest<OpenIddict.Server.OpenIddictServerEvents.ExtractIntrospectionRequestContext>.Descriptor);
                server.AddEventHandler(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers
                    .ExtractPostRequest<OpenIddict.Server.OpenIddictServerEvents.ExtractIntrospectionRequestContext>.Descriptor);

                // Plain signed JWTs (RFC 9068), so any API validates them with a stock JWT library.
                server.DisableAccessTokenEncryption();

                if (tokens.Issuer is not null)
                {
                    server.SetIssuer(tokens.Issuer);
                }

                server.SetAccessTokenLifetime(tokens.AccessTokenLifetime)
                    .SetIdentityTokenLifetime(tokens.IdentityTokenLifetime)
                    .SetRefreshTokenLifetime(tokens.RefreshTokenLifetime)
                    .SetAuthorizationCodeLifetime(tokens.AuthorizationCodeLifetime)
                    .SetDeviceCodeLifetime(tokens.DeviceCodeLifetime)
                    .SetUserCodeLifetime(tokens.DeviceCodeLifetime)
                    .SetRefreshTokenReuseLeeway(tokens.RefreshTokenReuseLeeway);

                // S256 only: "plain" gives no protection against a stolen code.
                server.Configure(options =>
                {
                    options.CodeChallengeMethods.Clear();
                    options.CodeChallengeMethods.Add(CodeChallengeMethods.Sha256);
                });

                var aspNetCore = server.UseAspNetCore()
                    .EnableAuthorizationEndpointPassthrough()
                    .EnableTokenEndpointPassthrough()
                    .EnableUserInfoEndpointPassthrough()
                    .EnableEndSessionEndpointPassthrough()
                    .EnableEndUserVerificationEndpointPassthrough()
                    .EnableErrorPassthrough();
                if (allowHttp)
                {
                    aspNetCore.DisableTransportSecurityRequirement();
                }
            });

        builder.Services.AddScoped<UserPrincipalFactory>();
        builder.Services.AddScoped<RememberedConsents>();
        builder.Services.AddSingleton<SignInMarker>();
        return builder;
    }

    private static string Relative(string route) => route.TrimStart('/');

    /// <summary>
    /// The issuer is an http or https URL without query or fragment (OpenID Connect Discovery 1.0 section 3). OpenIddict
    /// takes any URI, and with a relative one (<c>id.example.com</c>, the scheme forgotten) every protocol request failed.
    /// </summary>
    private static void CheckIssuer(Uri? issuer)
    {
        if (issuer is not null && !IdentityServer.Shared.AbsoluteUris.IsHttpUrl(issuer, originOnly: false))
        {
            throw new Hosting.StartupConfigurationException(
                $"Tokens:Issuer: '{issuer.OriginalString}' is not an http or https URL without user information, query or fragment (such as https://id.example.com/).");
        }
    }

    /// <summary>
    /// Completes OpenIddict's client authentication metadata (RFC 8414 2): <c>none</c> where public clients identify
    /// themselves with their client_id alone (every endpoint but introspection, which they cannot use), and the signing
    /// algorithms of <c>private_key_jwt</c> assertions, which must be listed wherever that method is.
    /// </summary>
    private static void DescribeClientAuthentication(OpenIddict.Server.OpenIddictServerEvents.HandleConfigurationRequestContext context)
    {
        foreach (var methods in new[] { context.TokenEndpointAuthenticationMethods, context.RevocationEndpointAuthenticationMethods,
            context.DeviceAuthorizationEndpointAuthenticationMethods, context.PushedAuthorizationEndpointAuthenticationMethods })
        {
            if (methods.Count > 0)
            {
                methods.Add(ClientAuthenticationMethods.None);
            }
        }

        foreach (var (methods, metadata) in new[]
        {
            (context.TokenEndpointAuthenticationMethods, "token_endpoint_auth_signing_alg_values_supported"),
            (context.RevocationEndpointAuthenticationMethods, "revocation_endpoint_auth_signing_alg_values_supported"),
            (context.IntrospectionEndpointAuthenticationMethods, "introspection_endpoint_auth_signing_alg_values_supported"),
        })
        {
            if (methods.Contains(ClientAuthenticationMethods.PrivateKeyJwt))
            {
                context.Metadata[metadata] = new OpenIddict.Abstractions.OpenIddictParameter([.. RequestObjects.Algorithms]);
            }
        }
    }

    /// <summary>
    /// A max_age sent empty counts as absent (RFC 6749 3.1); any other value must be whole seconds, 0 or more (one too
    /// large for a number here is simply never reached). An S256 code_challenge is 43 base64url characters. A
    /// response_type names each of its values once.
    /// </summary>
    private static void RefuseMalformedParameters(OpenIddict.Server.OpenIddictServerEvents.BaseValidatingContext context)
    {
        if (context.Transaction.Request is not { } request)
        {
            return;
        }

        if (request.ResponseType?.Split(' ', StringSplitOptions.RemoveEmptyEntries) is { } responseTypes
            && responseTypes.Distinct(StringComparer.Ordinal).Count() != responseTypes.Length)
        {
            context.Reject(Errors.InvalidRequest, "The response_type parameter must name each response type once.");
        }
        else if (request.GetParameter(Parameters.MaxAge)?.ToString() is { Length: > 0 } maxAge && !maxAge.All(char.IsAsciiDigit))
        {
            context.Reject(Errors.InvalidRequest, "The max_age parameter must be a whole number of seconds, 0 or more.");
        }
        else if (request.CodeChallengeMethod == CodeChallengeMethods.Sha256 && request.CodeChallenge is { } challenge
            && !IdentityServer.Shared.Base64UrlText.IsSha256(challenge))
        {
            context.Reject(Errors.InvalidRequest, "The code_challenge parameter must be the base64url SHA-256 of the code verifier: 43 characters.");
        }
    }

    private static void RefuseResources(OpenIddict.Server.OpenIddictServerEvents.BaseValidatingContext context)
    {
        var request = context.Transaction.Request;
        foreach (var resource in request is null ? [] : OpenIddict.Abstractions.OpenIddictExtensions.GetResources(request))
        {
            // On Unix "/x" parses as an absolute file URI; only one that says file: is one.
            if (!Uri.TryCreate(resource, UriKind.Absolute, out var uri) || (uri.IsFile && !resource.StartsWith("file:", StringComparison.OrdinalIgnoreCase)))
            {
                context.Reject(Errors.InvalidRequest, "The 'resource' parameter must be a valid absolute URI.");
                return;
            }

            if (!string.IsNullOrEmpty(uri.Fragment))
            {
                context.Reject(Errors.InvalidRequest, "The 'resource' parameter must not include a fragment.");
                return;
            }

            if (!context.Options.Resources.Contains(uri))
            {
                context.Reject(Errors.InvalidTarget, "One of the specified 'resource' parameters is invalid.");
                return;
            }
        }
    }

    public static WebApplication MapAuthorizationServer(this WebApplication app)
    {
        app.MapTokenEndpoint();
        app.MapUserInfoEndpoint();
        return app;
    }
}
