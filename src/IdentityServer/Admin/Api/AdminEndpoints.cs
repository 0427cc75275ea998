using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using IdentityServer.Clients;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing.Template;

namespace IdentityServer.Admin;

/// <summary>An audit entry as the admin API shows it.</summary>
public sealed record AuditView(
    [property: JsonPropertyName("id")] long Id,
    [property: JsonPropertyName("occurred_at")] DateTimeOffset OccurredAt,
    [property: JsonPropertyName("actor_type")] string ActorType,
    [property: JsonPropertyName("actor_id")] string ActorId,
    [property: JsonPropertyName("actor_name")] string? ActorName,
    [property: JsonPropertyName("actor_client_id")] string? ActorClientId,
    [property: JsonPropertyName("action")] string Action,
    [property: JsonPropertyName("target_type")] string TargetType,
    [property: JsonPropertyName("target_id")] string TargetId,
    [property: JsonPropertyName("before")] JsonElement? Before,
    [property: JsonPropertyName("after")] JsonElement? After,
    [property: JsonPropertyName("request_id")] string? RequestId)
{
    public static AuditView From(AuditEntry e) => new(e.Id, e.OccurredAt, e.ActorType, e.ActorId, e.ActorName, e.ActorClientId, e.Action,
        e.TargetType, e.TargetId, Parse(e.Before), Parse(e.After), e.RequestId);

    private static JsonElement? Parse(string? json) => json is null ? null : JsonDocument.Parse(json).RootElement.Clone();
}

public sealed record AuditPage(
    [property: JsonPropertyName("items")] IReadOnlyList<AuditView> Items,
    [property: JsonPropertyName("next_before")] long? NextBefore);

/// <summary>The JSON body an admin API operation reads, for its OpenAPI description.</summary>
public sealed record AdminRequestBody(Type Type);

public sealed record SecretView(
    [property: JsonPropertyName("client_id")] string ClientId,
    [property: JsonPropertyName("client_secret")] string ClientSecret);

/// <summary>The admin API: <c>/api/admin/...</c>, JSON in the client document format (RFC 7591 names).</summary>
public static class AdminEndpoints
{
    public static RouteGroupBuilder MapAdminApi(this IEndpointRouteBuilder endpoints)
    {
        var api = endpoints.MapGroup(AdminApi.RoutePrefix)
            .RequireAuthorization(AdminApi.ApiPolicy)
            .DisableAntiforgery()
            .AddEndpointFilter(NoStore)
            .AddEndpointFilter(AdminAccess.RequireAntiforgeryForCookies)
            .AddEndpointFilterFactory(QueryParameterChecks.Refuse)
            .WithGroupName(AdminApi.OpenApiDocumentName)
            .WithMetadata(new ProducesResponseTypeAttribute(StatusCodes.Status401Unauthorized),
                new ProducesResponseTypeAttribute(StatusCodes.Status403Forbidden));

        MapClients(api.MapGroup("/clients").WithTags("Clients"));
        MapScopes(api.MapGroup("/scopes").WithTags("Scopes"));
        MapUsers(api.MapGroup("/users").WithTags("Users"));
        MapRoles(api.MapGroup("/roles").WithTags("Roles"));
        api.MapGet("/audit", ListAuditAsync).WithTags("Audit").WithName("ListAudit")
            .WithSummary("Recent audit entries, newest first")
            .WithDescription("Every admin change: who, what, when, and the entry before and after (never a secret). Page back with before=next_before.")
            .Produces<AuditPage>();

        api.AnswerHeadLikeGet();

        // Anything else under the API answers as the API does (JSON), not with the login page or an HTML error. This
        // catch-all matches every method, so it answers 405 itself for a path whose operations take other methods.
        api.Map("/{**path}", (HttpContext http, EndpointDataSource endpoints) =>
            {
                if (MethodsAt(endpoints, http.Request.Path) is { Count: > 0 } allowed)
                {
                    http.Response.Headers.Allow = string.Join(", ", allowed);
                    return AdminResults.Error(StatusCodes.Status405MethodNotAllowed, "method_not_allowed",
                        $"This admin API operation takes {string.Join(", ", allowed)}, not {http.Request.Method}.");
                }

                return AdminResults.Error(StatusCodes.Status404NotFound, "not_found", "There is no such admin API operation.");
            })
            .ExcludeFromDescription();
        return api;
    }

    /// <summary>Every GET operation answers HEAD too (RFC 9110 9.3.2): the same status and headers, the body left out by Kestrel.</summary>
    public static TBuilder AnswerHeadLikeGet<TBuilder>(this TBuilder endpoints) where TBuilder : IEndpointConventionBuilder
    {
        endpoints.Add(endpoint =>
        {
            if (endpoint.Metadata.OfType<HttpMethodMetadata>().LastOrDefault() is { } methods
                && methods.HttpMethods.Contains(HttpMethods.Get) && !methods.HttpMethods.Contains(HttpMethods.Head))
            {
                endpoint.Metadata.Add(new HttpMethodMetadata([.. methods.HttpMethods, HttpMethods.Head], methods.AcceptCorsPreflight));
            }
        });
        return endpoints;
    }

    /// <summary>The methods of the operations whose route matches <paramref name="path"/>, for a 405's <c>Allow</c>; empty when none does.</summary>
    private static SortedSet<string> MethodsAt(EndpointDataSource endpoints, PathString path)
    {
        var methods = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var endpoint in endpoints.Endpoints.OfType<RouteEndpoint>())
        {
            if (endpoint.Metadata.GetMetadata<IHttpMethodMetadata>() is { HttpMethods.Count: > 0 } operation
                && new TemplateMatcher(new RouteTemplate(endpoint.RoutePattern), []).TryMatch(path, []))
            {
                methods.UnionWith(operation.HttpMethods);
            }
        }

        return methods;
    }

    private static void MapClients(RouteGroupBuilder clients)
    {
        clients.MapGet("", async (ClientAdmin admin, string? search, [FromQuery] QueryNumber? page, [FromQuery(Name = "page_size")] QueryNumber? pageSize, CancellationToken ct) =>
            {
                var found = await admin.ListAsync(search, page?.AsInt32, pageSize?.AsInt32, ct);
                return Results.Json(new PageOf<ClientDocument>([.. found.Items.Select(i => i.Document)], found.Total, found.Page, found.PageSize), AdminResults.Json);
            })
            .WithName("ListClients").WithSummary("List clients, filtered by client_id or name (search), paged")
            .Produces<PageOf<ClientDocument>>();

        clients.MapGet("/{clientId}", async (HttpContext http, ClientAdmin admin, string clientId, CancellationToken ct) =>
                AdminResults.From(http, await admin.GetAsync(clientId, ct), c => c.Document))
            .WithName("GetClient").WithSummary("Get a client (never its secret); the ETag header is its version")
            .Produces<ClientDocument>().Produces<AdminError>(StatusCodes.Status404NotFound);

        clients.MapPost("", async (HttpContext http, ClientAdmin admin, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<ClientDocument>(http, clientDocument: true);
                if (error is not null)
                {
                    return error;
                }

                var result = await admin.CreateAsync(document!, AdminAccess.ActorOf(http), ct);
                return AdminResults.From(http, result, c => WithSecret(c.Client.Document, c.Secret),
                    c => $"{AdminApi.RoutePrefix}/clients/{Uri.EscapeDataString(c.Client.Document.ClientId!)}");
            })
            .WithName("CreateClient")
            .WithSummary("Register a client")
            .WithDescription("The body is a client document (RFC 7591 metadata). A confidential client sent without client_secret gets a generated " +
                "one (256 random bits), returned in this response only. A client_secret sent by the caller is stored hashed and never returned.")
            .AcceptsJson<ClientDocument>()
            .Produces<ClientDocument>(StatusCodes.Status201Created)
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status409Conflict);

        clients.MapPut("/{clientId}", async (HttpContext http, ClientAdmin admin, string clientId, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<ClientDocument>(http, clientDocument: true);
                if (error is not null)
                {
                    return error;
                }

                var result = await admin.ReplaceAsync(clientId, document!, IfMatch(http), AdminAccess.ActorOf(http), ct);
                return AdminResults.From(http, result, c => WithSecret(c.Client.Document, c.Secret));
            })
            .WithName("ReplaceClient")
            .WithSummary("Replace a client")
            .WithDescription("Send If-Match with the ETag you read: a client changed since then answers 412 and nothing is written. " +
                "Without client_secret a confidential client keeps its secret (one that had none gets a generated one, returned once).")
            .AcceptsJson<ClientDocument>()
            .Produces<ClientDocument>()
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status412PreconditionFailed);

        clients.MapDelete("/{clientId}", async (HttpContext http, ClientAdmin admin, string clientId, CancellationToken ct) =>
            {
                var result = await admin.DeleteAsync(clientId, IfMatch(http), AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("DeleteClient").WithSummary("Delete a client with its tokens and authorizations (If-Match optional)")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status412PreconditionFailed);

        clients.MapPost("/{clientId}/secret", async (HttpContext http, ClientAdmin admin, string clientId, CancellationToken ct) =>
                AdminResults.From(http, await admin.RotateSecretAsync(clientId, IfMatch(http), AdminAccess.ActorOf(http), ct),
                    c => new SecretView(c.Client.Document.ClientId!, c.Secret!)))
            .WithName("RotateClientSecret")
            .WithSummary("Give a confidential client a new generated secret")
            .WithDescription("The new secret is in this response only; the old one stops working at once on this instance, " +
                "and within Performance:EntityCacheLifetime (30 s by default) on the others.")
            .Produces<SecretView>().Produces<AdminError>(StatusCodes.Status404NotFound).Produces<AdminError>(StatusCodes.Status409Conflict);
    }

    private static void MapScopes(RouteGroupBuilder scopes)
    {
        scopes.MapGet("", async (ScopeAdmin admin, string? search, [FromQuery] QueryNumber? page, [FromQuery(Name = "page_size")] QueryNumber? pageSize, CancellationToken ct) =>
            {
                var found = await admin.ListAsync(search, page?.AsInt32, pageSize?.AsInt32, ct);
                return Results.Json(new PageOf<ScopeDocument>([.. found.Items.Select(i => i.Document)], found.Total, found.Page, found.PageSize), AdminResults.Json);
            })
            .WithName("ListScopes").WithSummary("List the stored scopes (openid, profile, email, roles and offline_access are built in)")
            .Produces<PageOf<ScopeDocument>>();

        scopes.MapGet("/{name}", async (HttpContext http, ScopeAdmin admin, string name, CancellationToken ct) =>
                AdminResults.From(http, await admin.GetAsync(name, ct), s => s.Document))
            .WithName("GetScope").WithSummary("Get a scope; the ETag header is its version")
            .Produces<ScopeDocument>().Produces<AdminError>(StatusCodes.Status404NotFound);

        scopes.MapPost("", async (HttpContext http, ScopeAdmin admin, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<ScopeDocument>(http);
                return error ?? AdminResults.From(http, await admin.CreateAsync(document!, AdminAccess.ActorOf(http), ct), s => s.Document,
                    s => $"{AdminApi.RoutePrefix}/scopes/{Uri.EscapeDataString(s.Document.Name!)}");
            })
            .WithName("CreateScope").WithSummary("Create a scope; its resources become the aud of access tokens granted it")
            .AcceptsJson<ScopeDocument>()
            .Produces<ScopeDocument>(StatusCodes.Status201Created)
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status409Conflict);

        scopes.MapPut("/{name}", async (HttpContext http, ScopeAdmin admin, string name, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<ScopeDocument>(http);
                return error ?? AdminResults.From(http, await admin.ReplaceAsync(name, document!, IfMatch(http), AdminAccess.ActorOf(http), ct), s => s.Document);
            })
            .WithName("ReplaceScope").WithSummary("Replace a scope's display name, description and resources (If-Match: its ETag)")
            .AcceptsJson<ScopeDocument>()
            .Produces<ScopeDocument>()
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status409Conflict).Produces<AdminError>(StatusCodes.Status412PreconditionFailed);

        scopes.MapDelete("/{name}", async (HttpContext http, ScopeAdmin admin, string name, CancellationToken ct) =>
            {
                var result = await admin.DeleteAsync(name, IfMatch(http), AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("DeleteScope").WithSummary("Delete a scope no client is allowed any more")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status409Conflict).Produces<AdminError>(StatusCodes.Status412PreconditionFailed);
    }

    private static void MapUsers(RouteGroupBuilder users)
    {
        users.MapGet("", async (UserAdmin admin, string? search, [FromQuery] QueryNumber? page, [FromQuery(Name = "page_size")] QueryNumber? pageSize, CancellationToken ct) =>
                Results.Json(await admin.ListAsync(search, page?.AsInt32, pageSize?.AsInt32, ct), AdminResults.Json))
            .WithName("ListUsers").WithSummary("List users, searched by user name or email, paged")
            .Produces<PageOf<UserView>>();

        users.MapGet("/{id}", async (HttpContext http, UserAdmin admin, string id, CancellationToken ct) =>
                AdminResults.From(http, await admin.GetAsync(id, ct), u => u))
            .WithName("GetUser").WithSummary("Get a user; the ETag header is its version")
            .Produces<UserView>().Produces<AdminError>(StatusCodes.Status404NotFound);

        users.MapPost("", async (HttpContext http, UserAdmin admin, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<UserDocument>(http);
                return error ?? AdminResults.From(http, await admin.CreateAsync(document!, AdminAccess.ActorOf(http), ct), u => u,
                    u => $"{AdminApi.RoutePrefix}/users/{Uri.EscapeDataString(u.Id)}");
            })
            .WithName("CreateUser").WithSummary("Create a user, with a password (it must meet the policy) or without one")
            .AcceptsJson<UserDocument>()
            .Produces<UserView>(StatusCodes.Status201Created)
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status409Conflict);

        users.MapPut("/{id}", async (HttpContext http, UserAdmin admin, string id, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<UserDocument>(http);
                return error ?? AdminResults.From(http, await admin.UpdateAsync(id, document!, IfMatch(http), AdminAccess.ActorOf(http), ct), u => u);
            })
            .WithName("UpdateUser")
            .WithSummary("Replace a user's email, email_verified, roles and lockout_end (If-Match: its ETag)")
            .WithDescription("A lockout_end in the future locks the user out at once: sessions end and the user's tokens are revoked.")
            .AcceptsJson<UserDocument>()
            .Produces<UserView>()
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status409Conflict).Produces<AdminError>(StatusCodes.Status412PreconditionFailed);

        users.MapDelete("/{id}", async (HttpContext http, UserAdmin admin, string id, CancellationToken ct) =>
            {
                var result = await admin.DeleteAsync(id, IfMatch(http), AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("DeleteUser").WithSummary("Delete a user and revoke the user's tokens")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status409Conflict).Produces<AdminError>(StatusCodes.Status412PreconditionFailed);

        users.MapPost("/{id}/password", async (HttpContext http, UserAdmin admin, string id, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<PasswordDocument>(http);
                if (error is not null)
                {
                    return error;
                }

                var result = await admin.ResetPasswordAsync(id, document!.Password, IfMatch(http), AdminAccess.ActorOf(http), ct);
                if (!result.Succeeded)
                {
                    return AdminResults.Failure(http, result);
                }

                http.Response.Headers.ETag = result.ETag;
                return Results.NoContent();
            })
            .WithName("ResetUserPassword").WithSummary("Set a new password (it must meet the policy); sessions end and tokens are revoked")
            .AcceptsJson<PasswordDocument>()
            .Produces(StatusCodes.Status204NoContent)
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status404NotFound);

        users.MapGet("/{id}/sessions", async (HttpContext http, UserSessionAdmin admin, string id, CancellationToken ct) =>
                AdminResults.From(http, await admin.ListAsync(id, ct), s => s))
            .WithName("ListUserSessions").WithSummary("The user's live login sessions, newest first")
            .Produces<IReadOnlyList<SessionView>>().Produces<AdminError>(StatusCodes.Status404NotFound);

        users.MapDelete("/{id}/sessions", async (HttpContext http, UserSessionAdmin admin, string id, CancellationToken ct) =>
            {
                // ".../sessions/" is a script's empty session id, not a request to end them all (routing ignores the slash).
                if (http.Request.Path.Value?.EndsWith('/') == true)
                {
                    return AdminResults.Error(StatusCodes.Status404NotFound, "not_found", "No session id was given; to end every session, leave out the trailing slash.");
                }

                var result = await admin.EndAllAsync(id, AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("EndUserSessions").WithSummary("End every session of the user and revoke the user's tokens, as the user's own \"sign out everywhere\"")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound);

        users.MapDelete("/{id}/sessions/{sessionId}", async (HttpContext http, UserSessionAdmin admin, string id, string sessionId, CancellationToken ct) =>
            {
                var result = await admin.EndAsync(id, sessionId, AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("EndUserSession").WithSummary("End one session of the user (its browser is signed out at its next request)")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound);

        users.MapGet("/{id}/logins", async (HttpContext http, UserLoginAdmin admin, string id, CancellationToken ct) =>
                AdminResults.From(http, await admin.ListAsync(id, ct), l => l))
            .WithName("ListUserLogins").WithSummary("The provider accounts the user signs in with (ExternalProviders)")
            .Produces<IReadOnlyList<UserLoginView>>().Produces<AdminError>(StatusCodes.Status404NotFound);

        users.MapDelete("/{id}/logins", async (HttpContext http, UserLoginAdmin admin, string id, string? provider,
                [FromQuery(Name = "account_id")] string? accountId, CancellationToken ct) =>
            {
                var result = await admin.RemoveAsync(id, provider, accountId, AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("RemoveUserLogin").WithSummary("Disconnect a provider account (?provider=&account_id=) from the user; every session of the user ends and its tokens are revoked")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound);
    }

    private static void MapRoles(RouteGroupBuilder roles)
    {
        roles.MapGet("", async (RoleAdmin admin, CancellationToken ct) => Results.Json(await admin.ListAsync(ct), AdminResults.Json))
            .WithName("ListRoles").WithSummary("List roles with how many users have each")
            .Produces<IReadOnlyList<RoleView>>();

        roles.MapPost("", async (HttpContext http, RoleAdmin admin, CancellationToken ct) =>
            {
                var (document, error) = await AdminResults.ReadAsync<RoleDocument>(http);
                return error ?? AdminResults.From(http, await admin.CreateAsync(document!, AdminAccess.ActorOf(http), ct), r => r,
                    r => $"{AdminApi.RoutePrefix}/roles/{Uri.EscapeDataString(r.Name)}");
            })
            .WithName("CreateRole").WithSummary("Create a role")
            .AcceptsJson<RoleDocument>()
            .Produces<RoleView>(StatusCodes.Status201Created)
            .Produces<AdminError>(StatusCodes.Status400BadRequest).Produces<AdminError>(StatusCodes.Status409Conflict);

        roles.MapDelete("/{name}", async (HttpContext http, RoleAdmin admin, string name, CancellationToken ct) =>
            {
                var result = await admin.DeleteAsync(name, AdminAccess.ActorOf(http), ct);
                return result.Succeeded ? Results.NoContent() : AdminResults.Failure(http, result);
            })
            .WithName("DeleteRole").WithSummary("Delete a role (the admin role is built in)")
            .Produces(StatusCodes.Status204NoContent).Produces<AdminError>(StatusCodes.Status404NotFound)
            .Produces<AdminError>(StatusCodes.Status409Conflict);
    }

    private static async Task<IResult> ListAuditAsync(AuditLog audit, [FromQuery] QueryNumber? limit, [FromQuery] QueryNumber? before,
        [FromQuery(Name = "target_type")] string? targetType, [FromQuery(Name = "target_id")] string? targetId, CancellationToken ct)
    {
        var size = Math.Clamp(limit?.AsInt32 ?? 50, 1, 200);
        var entries = await audit.ListAsync(size, before?.Value, targetType, targetId, ct);
        return Results.Json(new AuditPage([.. entries.Select(AuditView.From)], entries.Count == size ? entries[^1].Id : null), AdminResults.Json);
    }

    private static JsonObject WithSecret(ClientDocument document, string? secret)
    {
        var json = JsonSerializer.SerializeToNode(document, AdminResults.Json)!.AsObject();
        json.Remove("client_secret");
        if (secret is not null)
        {
            json["client_secret"] = secret;
        }

        return json;
    }

    /// <summary>
    /// Describes the JSON body in the OpenAPI document. Not <c>Accepts</c>: that would also make routing refuse other
    /// content types before our handler could answer them with an admin API error.
    /// </summary>
    private static RouteHandlerBuilder AcceptsJson<T>(this RouteHandlerBuilder builder) => builder.WithMetadata(new AdminRequestBody(typeof(T)));

    private static string? IfMatch(HttpContext http) => http.Request.Headers.IfMatch.ToString() is { Length: > 0 } value ? value : null;

    private static async ValueTask<object?> NoStore(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        context.HttpContext.Response.Headers.CacheControl = "no-store";
        return await next(context);
    }
}
