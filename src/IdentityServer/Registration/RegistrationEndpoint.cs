using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using IdentityServer.Admin;
using IdentityServer.Authorization;
using IdentityServer.Clients;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server;

namespace IdentityServer.Registration;

/// <summary>
/// OAuth 2.0 Dynamic Client Registration (RFC 7591) at <c>/connect/register</c>, and its management protocol (RFC 7592)
/// at <c>/connect/register/{client_id}</c>: reading a registration and deleting it, with the registration access token
/// the registration answered (stored as its SHA-256 only). A registered client is created as the admin API creates one
/// (same rules, audit, caches), with a server-chosen <c>client_id</c>.
/// </summary>
public static class RegistrationEndpoint
{
    /// <summary>Where a registered client's registration access token is kept: its SHA-256, lowercase hex.</summary>
    public const string AccessTokenHashProperty = "registration_access_token_sha256";

    private const string InvalidClientMetadata = "invalid_client_metadata";

    private static readonly JsonSerializerOptions DocumentJson = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public static WebApplication MapRegistration(this WebApplication endpoints)
    {
        var options = endpoints.Services.GetRequiredService<IOptions<RegistrationOptions>>().Value;
        if (!options.Enabled)
        {
            // Not there: a plain 404, not the sign-in page every unknown path without a session is sent to.
            endpoints.MapMethods(ProtocolRoutes.Registration + "/{**rest}", [HttpMethods.Get, HttpMethods.Post, HttpMethods.Put, HttpMethods.Delete],
                () => Results.NotFound()).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
            return endpoints;
        }

        var register = endpoints.MapPost(ProtocolRoutes.Registration, RegisterAsync).DisableAntiforgery().ExcludeFromDescription();
        if (options.RequireInitialAccessToken)
        {
            register.RequireAuthorization(AdminApi.ApiPolicy);
        }
        else
        {
            register.AllowAnonymous();
        }

        endpoints.MapGet(ProtocolRoutes.Registration + "/{clientId}", ReadAsync).AllowAnonymous().ExcludeFromDescription();
        endpoints.MapDelete(ProtocolRoutes.Registration + "/{clientId}", DeleteAsync).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        return endpoints;
    }

    private static async Task<IResult> RegisterAsync(HttpContext http, ClientAdmin clients, IOptions<RegistrationOptions> options,
        IOptionsMonitor<OpenIddictServerOptions> server, ILogger<RegistrationRequest> logger)
    {
        RegistrationRequest? request = null;
        if (http.Request.HasJsonContentType())
        {
            try
            {
                request = await http.Request.ReadFromJsonAsync<RegistrationRequest>(http.RequestAborted);
            }
            catch (JsonException)
            {
                // answered below
            }
        }

        if (request is null)
        {
            return Error(InvalidClientMetadata, "The request must be a JSON object of client metadata (application/json).");
        }

        var clientId = "dcr-" + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16));
        var (document, problem) = request.ToDocument(clientId, options.Value);
        if (document is null)
        {
            logger.LogInformation(RegistrationEvents.RegistrationRefused, "Client registration refused: {Problem}", problem);
            return Error(InvalidClientMetadata, problem!);
        }

        var accessToken = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        var actor = options.Value.RequireInitialAccessToken ? AdminAccess.ActorOf(http)
            : new AdminActor(AdminActor.RegistrationType, http.Connection.RemoteIpAddress?.ToString() ?? "unknown", null, null, http.TraceIdentifier);
        var created = await clients.CreateAsync(document, actor, http.RequestAborted,
            new Dictionary<string, JsonElement> { [AccessTokenHashProperty] = JsonSerializer.SerializeToElement(Hash(accessToken)) });
        if (!created.Succeeded)
        {
            var first = created.Errors.FirstOrDefault();
            logger.LogInformation(RegistrationEvents.RegistrationRefused, "Client registration refused: {Problem}", string.Join("; ", created.Errors));
            return Error(first?.Error is "invalid_redirect_uri" ? "invalid_redirect_uri" : InvalidClientMetadata,
                string.Join(" ", created.Errors.Select(e => e.ToString())));
        }

        logger.LogInformation(RegistrationEvents.ClientRegistered, "Client {ClientId} registered by {Actor}", clientId, actor);
        var answer = Describe(http, server.CurrentValue, created.Value!.Client.Document);
        answer["client_id_issued_at"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (created.Value.Secret is { } secret)
        {
            answer["client_secret"] = secret;
            answer["client_secret_expires_at"] = 0;
        }

        answer["registration_access_token"] = accessToken;
        return Json(answer, StatusCodes.Status201Created, http);
    }

    /// <summary>RFC 7592 section 2.1: the registration as it is now (never the secret, which is stored hashed).</summary>
    private static async Task<IResult> ReadAsync(string clientId, HttpContext http, ClientAdmin clients, IOpenIddictApplicationManager applications,
        IOptionsMonitor<OpenIddictServerOptions> server)
    {
        if (!await HoldsRegistrationAccessTokenAsync(http, clientId, applications))
        {
            return InvalidToken(http);
        }

        var entry = await clients.GetAsync(clientId, http.RequestAborted);
        return entry.Succeeded ? Json(Describe(http, server.CurrentValue, entry.Value!.Document), StatusCodes.Status200OK, http) : InvalidToken(http);
    }

    /// <summary>RFC 7592 section 2.3: the client deregisters itself; its tokens stop working with it.</summary>
    private static async Task<IResult> DeleteAsync(string clientId, HttpContext http, ClientAdmin clients, IOpenIddictApplicationManager applications,
        ILogger<RegistrationRequest> logger)
    {
        if (!await HoldsRegistrationAccessTokenAsync(http, clientId, applications))
        {
            return InvalidToken(http);
        }

        var actor = new AdminActor(AdminActor.RegistrationType, clientId, null, clientId, http.TraceIdentifier);
        var deleted = await clients.DeleteAsync(clientId, ifMatch: null, actor, http.RequestAborted);
        if (!deleted.Succeeded)
        {
            return InvalidToken(http);
        }

        logger.LogInformation(RegistrationEvents.ClientDeregistered, "Client {ClientId} deleted its registration", clientId);
        return Results.NoContent();
    }

    /// <summary>Whether the request's bearer token is the client's registration access token; an unknown client holds none.</summary>
    private static async Task<bool> HoldsRegistrationAccessTokenAsync(HttpContext http, string clientId, IOpenIddictApplicationManager applications)
    {
        var authorization = http.Request.Headers.Authorization.ToString();
        if (!authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            || await applications.FindByClientIdAsync(clientId, http.RequestAborted) is not { } application
            || (await applications.GetPropertiesAsync(application, http.RequestAborted)).GetValueOrDefault(AccessTokenHashProperty) is not
                { ValueKind: JsonValueKind.String } stored)
        {
            return false;
        }

        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Hash(authorization["Bearer ".Length..].Trim())),
            Encoding.ASCII.GetBytes(stored.GetString()!));
    }

    /// <summary>The client's metadata as registered, with where to manage it.</summary>
    private static JsonObject Describe(HttpContext http, OpenIddictServerOptions server, ClientDocument document)
    {
        var answer = JsonSerializer.SerializeToNode(document, DocumentJson)!.AsObject();
        answer["response_types"] = document.GrantTypes.Contains(OpenIddictConstants.GrantTypes.AuthorizationCode) ? new JsonArray("code") : new JsonArray();
        if (ServerIssuer.Of(http, server) is { } issuer)
        {
            answer["registration_client_uri"] = new Uri(issuer, ProtocolRoutes.Registration.TrimStart('/') + "/" + Uri.EscapeDataString(document.ClientId!)).AbsoluteUri;
        }

        return answer;
    }

    private static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    private static IResult Json(JsonObject body, int status, HttpContext http)
    {
        http.Response.Headers.CacheControl = "no-store";
        http.Response.Headers.Pragma = "no-cache";
        return Results.Json(body, statusCode: status);
    }

    private static IResult Error(string error, string description) =>
        Results.Json(new Dictionary<string, string> { ["error"] = error, ["error_description"] = description }, statusCode: StatusCodes.Status400BadRequest);

    /// <summary>401 for a missing or wrong registration access token, and for an unknown client alike (RFC 7592 section 2).</summary>
    private static IResult InvalidToken(HttpContext http)
    {
        http.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
        return Results.Json(new Dictionary<string, string>
        {
            ["error"] = "invalid_token", ["error_description"] = "The registration access token is missing or not this client's.",
        }, statusCode: StatusCodes.Status401Unauthorized);
    }
}

public static class RegistrationEvents
{
    public static readonly EventId ClientRegistered = new(5027, nameof(ClientRegistered));
    public static readonly EventId RegistrationRefused = new(5028, nameof(RegistrationRefused));
    public static readonly EventId ClientDeregistered = new(5029, nameof(ClientDeregistered));
}
