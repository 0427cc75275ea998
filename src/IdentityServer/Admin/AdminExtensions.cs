using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.OpenApi;
using OpenIddict.Validation;
using OpenIddict.Validation.AspNetCore;
using IdentityServer.Data;

using IdentityServer.Keys;

namespace IdentityServer.Admin;

public static class AdminExtensions
{
    /// <summary>
    /// The admin API (bearer access tokens of this server with the admin scope, or an admin's session cookie), the
    /// admin pages (the admin role), the audit log, the built-in admin scope and role, and the API's OpenAPI document.
    /// </summary>
    public static WebApplicationBuilder AddAdmin(this WebApplicationBuilder builder)
    {
        // Our own access tokens, validated with our own keys and issuer, and only while their token entry is valid (a
        // revoked token stops working at once). The admin audience and scope are checked by the policy, so that a valid
        // token meant for another API gets 403 (insufficient access) rather than 401 (invalid token).
        builder.Services.AddOpenIddict().AddValidation(validation =>
        {
            validation.UseLocalServer();
            validation.UseKeyRing();
            validation.UseAspNetCore();
            validation.EnableTokenEntryValidation();
            Dpop.DpopValidationHandlers.Register(validation);
        });
        BearerOnlyValidationHandler.Register(builder.Services);

        builder.Services.AddAuthentication()
            .AddPolicyScheme(AdminApi.ApiScheme, "Admin API", options =>
                options.ForwardDefaultSelector = context => AdminAccess.CarriesAccessToken(context)
                    ? OpenIddictValidationAspNetCoreDefaults.AuthenticationScheme
                    : AdminSessionHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, AdminSessionHandler>(AdminSessionHandler.SchemeName, null);

        builder.Services.AddHttpContextAccessor();
        builder.Services.AddScoped<IAuthorizationHandler, AdminRequirementHandler>();
        builder.Services.AddSingleton<IAuthorizationMiddlewareResultHandler, AdminApiRefusals>();
        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(AdminApi.ApiPolicy, policy => policy
                .AddAuthenticationSchemes(AdminApi.ApiScheme)
                .RequireAuthenticatedUser()
                .AddRequirements(new AdminRequirement(allowBearer: true)))
            .AddPolicy(AdminApi.PagesPolicy, policy => policy
                .AddAuthenticationSchemes(IdentityConstants.ApplicationScheme)
                .RequireAuthenticatedUser()
                .AddRequirements(new AdminRequirement(allowBearer: false)));
        builder.Services.Configure<RazorPagesOptions>(options => options.Conventions.AuthorizeFolder("/Admin", AdminApi.PagesPolicy));

        builder.Services.AddScoped<AuditLog>();
        builder.Services.AddScoped<ClientAdmin>();
        builder.Services.AddScoped<ScopeAdmin>();
        builder.Services.AddScoped<UserAdmin>();
        builder.Services.AddScoped<UserSessionAdmin>();
        builder.Services.AddScoped<UserLoginAdmin>();
        builder.Services.AddScoped<RoleAdmin>();
        builder.Services.AddScoped<IBuiltInSeed, AdminBootstrap>();

        builder.Services.AddOpenApi(AdminApi.OpenApiDocumentName, options =>
        {
            options.ShouldInclude = description => description.GroupName == AdminApi.OpenApiDocumentName;
            options.AddDocumentTransformer((document, _, _) =>
            {
                document.Info = new OpenApiInfo
                {
                    Title = "Identity Server admin API",
                    Version = "v1",
                    Description = $"Manage clients, scopes, users and roles. Call it with an access token of this server carrying the " +
                        $"'{AdminApi.Scope}' scope (audience {AdminApi.Audience}), e.g. from the client credentials grant. Errors are " +
                        "{\"error\", \"error_description\", \"errors\": [{\"error\", \"field\", \"description\"}]} with RFC 7591 codes for clients.",
                };
                document.Components ??= new OpenApiComponents();
                document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
                document.Components.SecuritySchemes["bearer"] = new OpenApiSecurityScheme
                {
                    Type = SecuritySchemeType.Http,
                    Scheme = "bearer",
                    BearerFormat = "JWT",
                    Description = $"An access token from this server's token endpoint with the '{AdminApi.Scope}' scope.",
                };
                document.Security ??= [];
                document.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("bearer", document)] = [] });
                return Task.CompletedTask;
            });
            // A QueryNumber is read from the query string as any whole number, so it is described as one, not as the object it is.
            options.AddSchemaTransformer((schema, context, _) =>
            {
                if ((Nullable.GetUnderlyingType(context.JsonTypeInfo.Type) ?? context.JsonTypeInfo.Type) == typeof(QueryNumber))
                {
                    schema.Type = JsonSchemaType.Integer;
                    schema.Format = null;
                    schema.Pattern = null;
                    schema.Properties?.Clear();
                    schema.Description = "A whole number; one beyond the range of a 32-bit integer (64-bit for the audit's before) is taken as the largest (or smallest).";
                }

                return Task.CompletedTask;
            });
            options.AddOperationTransformer(async (operation, context, ct) =>
            {
                if (context.Description.ActionDescriptor.EndpointMetadata.OfType<AdminRequestBody>().FirstOrDefault() is { } body)
                {
                    operation.RequestBody = new OpenApiRequestBody
                    {
                        Required = true,
                        Content = new Dictionary<string, OpenApiMediaType>
                        {
                            ["application/json"] = new() { Schema = await context.GetOrCreateSchemaAsync(body.Type, null, ct) },
                        },
                    };
                }
            });
        });

        return builder;
    }

    public static WebApplication MapAdmin(this WebApplication app)
    {
        app.MapAdminApi().MapKeysAdmin();
        app.MapOpenApi(AdminApi.OpenApiRoute).AllowAnonymous().AnswerHeadLikeGet();
        return app;
    }
}
