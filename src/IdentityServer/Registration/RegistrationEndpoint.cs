using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using IdentityServer.Admin;
using IdentityServer.Authorization;
using IdentityServer.Clients;
using IdentityServer.Shared;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;

namespace IdentityServer.Registration;

/// <summary>
/// OAuth 2.0 Dynamic Client Registration (RFC 7591) at <c>/connect/register</c>, and its management protocol (RFC 7592)
/// at <c>/connect/register/{client_id}</c>: reading, updating and deleting a registration, with the registration access
/// token the registration answered (stored as its SHA-256 only). A registered client is created as the admin API creates one
/// (same rules, audit, caches), with a server-chosen <c>client_id</c>.
/// </summary>
public static class RegistrationEndpoint
{
    private const string AccessTokenHashProperty = ClientDescriptorMapper.RegistrationAccessTokenHashProperty;

    /// <summary>What every client_id this endpoint chooses starts with.</summary>
    public const string ClientIdPrefix = "dcr-";

    private const string InvalidClientMetadata = "invalid_client_metadata";

    private static readonly JsonSerializerOptions DocumentJson = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>How requests are read: the web defaults, but a member named twice is refused rather than read as its last value.</summary>
    private static readonly JsonSerializerOptions RequestJson = new(JsonSerializerDefaults.Web) { AllowDuplicateProperties = false };

    public static WebApplication MapRegistration(this WebApplication endpoints)
    {
        var options = endpoints.Services.GetRequiredService<IOptions<RegistrationOptions>>().Value;
        if (!options.Enabled)
        {
            // Not there: a plain 404, not the sign-in page every unknown path without a session is sent to.
            endpoints.Map(ProtocolRoutes.Registration + "/{**rest}", () => Results.NotFound())
                .AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
            return endpoints;
        }

        // Any other method asked of the two addresses (TRACE, a plain OPTIONS, one no RFC names) is a 405 in JSON, not
        // the sign-in page: these match every method, after the endpoints below (a CORS preflight is answered before).
        endpoints.Map(ProtocolRoutes.Registration, (HttpContext http) => NotAllowed(http, HttpMethods.Post))
            .WithOrder(1).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        endpoints.Map(ProtocolRoutes.Registration + "/{clientId}", (HttpContext http) => NotAllowed(http, $"{HttpMethods.Get}, {HttpMethods.Put}, {HttpMethods.Delete}"))
            .WithOrder(1).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();

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
        endpoints.MapPut(ProtocolRoutes.Registration + "/{clientId}", UpdateAsync).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        endpoints.MapDelete(ProtocolRoutes.Registration + "/{clientId}", DeleteAsync).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        return endpoints;
    }

    private static async Task<IResult> RegisterAsync(HttpContext http, ClientAdmin clients, IOptions<RegistrationOptions> options,
        ILogger<RegistrationRequest> logger)
    {
        // An initial access token is a bearer token: an admin's session cookie, which the admin policy also takes, is not
        // one (and this endpoint has no antiforgery check for it).
        if (options.Value.RequireInitialAccessToken && !AdminAccess.IsBearerRequest(http))
        {
            return InvalidToken(http, "Registration needs an initial access token (an admin access token) in the Authorization header.");
        }

        if (await ReadRequestAsync(http) is not { } request)
        {
            return BadMetadata(NotMetadata);
        }

        var clientId = ClientIdPrefix + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16));
        // With initial access tokens required, only a request with an admin's bearer token gets here (the policy, the check above).
        var (document, problem) = request.ToDocument(clientId, options.Value, withInitialAccessToken: options.Value.RequireInitialAccessToken,
            await clients.KnownScopesAsync(http.RequestAborted));
        if (document is null)
        {
            logger.LogInformation(RegistrationEvents.RegistrationRefused, "Client registration refused: {Problem}", problem);
            return BadMetadata(problem!);
        }

        var accessToken = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        var actor = options.Value.RequireInitialAccessToken ? AdminAccess.ActorOf(http) : ActorOf(http, clientId: null);
        var created = await clients.CreateAsync(document, actor, http.RequestAborted,
            new Dictionary<string, JsonElement> { [AccessTokenHashProperty] = JsonSerializer.SerializeToElement(StoredHash.Of(accessToken)) });
        if (!created.Succeeded)
        {
            logger.LogInformation(RegistrationEvents.RegistrationRefused, "Client registration refused: {Problem}", string.Join("; ", created.Errors));
            return Refused(created.Errors);
        }

        logger.LogInformation(RegistrationEvents.ClientRegistered, "Client {ClientId} registered by {Actor}", clientId, actor);
        var answer = Answer(http, created.Value!, accessToken);
        answer["client_id_issued_at"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return Json(answer, StatusCodes.Status201Created, http);
    }

    /// <summary>
    /// RFC 7592 sections 2.1 and 3: the registration as it is now, with the registration access token it was read with
    /// (never the secret, which is stored hashed).
    /// </summary>
    private static async Task<IResult> ReadAsync(string clientId, HttpContext http, ClientAdmin clients, IOpenIddictApplicationManager applications)
    {
        if (await RegistrationAccessTokenAsync(http, clientId, applications) is not { } token)
        {
            return InvalidToken(http);
        }

        var entry = await clients.GetAsync(clientId, http.RequestAborted);
        if (!entry.Succeeded)
        {
            return InvalidToken(http);
        }

        var answer = Describe(http, entry.Value!.Document);
        answer["registration_access_token"] = token;
        return Json(answer, StatusCodes.Status200OK, http);
    }

    /// <summary>
    /// RFC 7592 section 2.2: the client replaces its metadata, under the same limits as a registration (what it leaves out
    /// is gone or back to its default). It names itself (<c>client_id</c>) and, if it sends its secret, the right one;
    /// it keeps its secret, and gets one, shown once, if it becomes confidential.
    /// </summary>
    private static async Task<IResult> UpdateAsync(string clientId, HttpContext http, ClientAdmin clients, IOpenIddictApplicationManager applications,
        IOptions<RegistrationOptions> options, ILogger<RegistrationRequest> logger)
    {
        if (await RegistrationAccessTokenAsync(http, clientId, applications) is not { } token)
        {
            return InvalidToken(http);
        }

        if (await ReadRequestAsync(http) is not { } request)
        {
            return BadMetadata(NotMetadata);
        }

        var current = await clients.GetAsync(clientId, http.RequestAborted);
        if (!current.Succeeded)
        {
            return InvalidToken(http);
        }

        var problem = request.ClientId != clientId ? "client_id: must be this client's own (RFC 7592 section 2.2)."
            : request.ClientSecret is { } secret && (secret.Length == 0
                || !(await applications.FindByClientIdAsync(clientId, http.RequestAborted) is { } application
                    && await applications.ValidateClientSecretAsync(application, secret, http.RequestAborted)))
                ? "client_secret: not this client's secret."
            : null;
        var before = current.Value!.Document;
        var (document, limit) = problem is null
            ? request.ToDocument(clientId, options.Value, withInitialAccessToken: false, await clients.KnownScopesAsync(http.RequestAborted), before)
            : (null, problem);
        if (document is null)
        {
            logger.LogInformation(RegistrationEvents.RegistrationRefused, "Update of registered client {ClientId} refused: {Problem}", clientId, limit);
            return BadMetadata(limit!);
        }

        var replaced = await clients.ReplaceAsync(clientId, document, ifMatch: null, ActorOf(http, clientId), http.RequestAborted);
        if (replaced.Outcome == AdminOutcome.NotFound)
        {
            return InvalidToken(http);
        }

        if (replaced.Outcome == AdminOutcome.PreconditionFailed)
        {
            return Error(StatusCodes.Status409Conflict, "invalid_request", "The client changed while it was being updated: read it again and retry.");
        }

        if (!replaced.Succeeded)
        {
            logger.LogInformation(RegistrationEvents.RegistrationRefused, "Update of registered client {ClientId} refused: {Problem}", clientId,
                string.Join("; ", replaced.Errors));
            return Refused(replaced.Errors);
        }

        // People consented to the app as it was: a new address or name is asked about again (the consent page names both).
        if (!before.RedirectUris.Order(StringComparer.Ordinal).SequenceEqual(document.RedirectUris.Order(StringComparer.Ordinal))
            || before.ClientName != document.ClientName)
        {
            await RevokeConsentsAsync(http, clientId);
        }

        logger.LogInformation(RegistrationEvents.ClientUpdated, "Registered client {ClientId} updated its registration", clientId);
        return Json(Answer(http, replaced.Value!, token), StatusCodes.Status200OK, http);
    }

    /// <summary>RFC 7592 section 2.3: the client deregisters itself; its tokens stop working with it.</summary>
    private static async Task<IResult> DeleteAsync(string clientId, HttpContext http, ClientAdmin clients, IOpenIddictApplicationManager applications,
        ILogger<RegistrationRequest> logger)
    {
        if (await RegistrationAccessTokenAsync(http, clientId, applications) is null)
        {
            return InvalidToken(http);
        }

        var deleted = await clients.DeleteAsync(clientId, ifMatch: null, ActorOf(http, clientId), http.RequestAborted);
        if (!deleted.Succeeded)
        {
            return InvalidToken(http);
        }

        logger.LogInformation(RegistrationEvents.ClientDeregistered, "Client {ClientId} deleted its registration", clientId);
        return Results.NoContent();
    }

    /// <summary>An anonymous registrant (no <paramref name="clientId"/>) or a registered client managing itself, from the caller's address.</summary>
    private static AdminActor ActorOf(HttpContext http, string? clientId) =>
        new(AdminActor.RegistrationType, http.Connection.RemoteIpAddress?.ToString() ?? "unknown", null, clientId, http.TraceIdentifier);

    /// <summary>Revokes the consents people gave the client (its permanent authorizations); the tokens of their sign-ins are not touched.</summary>
    private static async Task RevokeConsentsAsync(HttpContext http, string clientId)
    {
        var services = http.RequestServices;
        var applications = services.GetRequiredService<IOpenIddictApplicationManager>();
        var authorizations = services.GetRequiredService<IOpenIddictAuthorizationManager>();
        if (await applications.FindByClientIdAsync(clientId, CancellationToken.None) is not { } application
            || await applications.GetIdAsync(application, CancellationToken.None) is not { } applicationId)
        {
            return;
        }

        await foreach (var authorization in authorizations.FindByApplicationIdAsync(applicationId, CancellationToken.None))
        {
            if (await authorizations.HasTypeAsync(authorization, OpenIddictConstants.AuthorizationTypes.Permanent, CancellationToken.None))
            {
                await authorizations.TryRevokeAsync(authorization, CancellationToken.None);
            }
        }
    }

    private const string NotMetadata = "The request must be a JSON object of client metadata (application/json).";

    /// <summary>The request's client metadata; null when the body is not a JSON object, or in a charset there is no decoder for.</summary>
    private static async Task<RegistrationRequest?> ReadRequestAsync(HttpContext http)
    {
        if (!http.Request.HasJsonContentType())
        {
            return null;
        }

        try
        {
            return await http.Request.ReadFromJsonAsync<RegistrationRequest>(RequestJson, http.RequestAborted);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// The request's bearer token when it is the client's registration access token; null otherwise, and for a client
    /// registered another way (an unknown client holds none either).
    /// </summary>
    private static async Task<string?> RegistrationAccessTokenAsync(HttpContext http, string clientId, IOpenIddictApplicationManager applications)
    {
        var authorization = http.Request.Headers.Authorization.ToString();
        if (!authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            || await applications.FindByClientIdAsync(clientId, http.RequestAborted) is not { } application
            || (await applications.GetPropertiesAsync(application, http.RequestAborted)).GetValueOrDefault(AccessTokenHashProperty) is not
                { ValueKind: JsonValueKind.String } stored)
        {
            return null;
        }

        var token = authorization["Bearer ".Length..].Trim();
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(StoredHash.Of(token)), Encoding.ASCII.GetBytes(stored.GetString()!)) ? token : null;
    }

    /// <summary>The answer to a registration or an update: the registration, its secret if one was just generated (shown this once), its access token.</summary>
    private static JsonObject Answer(HttpContext http, ClientWithSecret client, string registrationAccessToken)
    {
        var answer = Describe(http, client.Client.Document);
        if (client.Secret is { } secret)
        {
            answer["client_secret"] = secret;
            answer["client_secret_expires_at"] = 0;
        }

        answer["registration_access_token"] = registrationAccessToken;
        return answer;
    }

    /// <summary>The client's metadata as registered, with where to manage it (under the request's base address, as discovery names endpoints).</summary>
    private static JsonObject Describe(HttpContext http, ClientDocument document)
    {
        var answer = JsonSerializer.SerializeToNode(document, DocumentJson)!.AsObject();
        answer["response_types"] = document.GrantTypes.Contains(OpenIddictConstants.GrantTypes.AuthorizationCode) ? new JsonArray("code") : new JsonArray();
        var request = http.Request;
        answer["registration_client_uri"] =
            $"{request.Scheme}://{request.Host}{request.PathBase}{ProtocolRoutes.Registration}/{Uri.EscapeDataString(document.ClientId!)}";
        return answer;
    }

    private static IResult Json(JsonObject body, int status, HttpContext http)
    {
        http.Response.Headers.CacheControl = "no-store";
        http.Response.Headers.Pragma = "no-cache";
        return Results.Json(body, statusCode: status);
    }

    private static IResult NotAllowed(HttpContext http, string allow)
    {
        http.Response.Headers.Allow = allow;
        return Error(StatusCodes.Status405MethodNotAllowed, "invalid_request", $"This address takes {allow} only.");
    }

    private static IResult BadMetadata(string description) => Error(StatusCodes.Status400BadRequest, InvalidClientMetadata, description);

    /// <summary>What the client document's rules refused: invalid_redirect_uri when that comes first, else invalid_client_metadata (RFC 7591 section 3.2.2).</summary>
    private static IResult Refused(IReadOnlyList<FieldError> errors) =>
        Error(StatusCodes.Status400BadRequest, errors.FirstOrDefault()?.Error is "invalid_redirect_uri" ? "invalid_redirect_uri" : InvalidClientMetadata,
            string.Join(" ", errors.Select(e => e.ToString())));

    /// <summary>401 for a missing or wrong registration access token, and for an unknown client alike (RFC 7592 section 2).</summary>
    private static IResult InvalidToken(HttpContext http, string description = "The registration access token is missing or not this client's.")
    {
        http.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
        return Error(StatusCodes.Status401Unauthorized, "invalid_token", description);
    }

    private static IResult Error(int status, string error, string description) =>
        Results.Json(new Dictionary<string, string> { ["error"] = error, ["error_description"] = description }, statusCode: status);
}

public static class RegistrationEvents
{
    public static readonly EventId ClientRegistered = new(5027, nameof(ClientRegistered));
    public static readonly EventId RegistrationRefused = new(5028, nameof(RegistrationRefused));
    public static readonly EventId ClientDeregistered = new(5029, nameof(ClientDeregistered));
    public static readonly EventId ErrorNotRedirected = new(5030, nameof(ErrorNotRedirected));
    public static readonly EventId ClientUpdated = new(5031, nameof(ClientUpdated));
}
