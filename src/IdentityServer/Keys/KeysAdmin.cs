using System.Text.Json.Serialization;

namespace IdentityServer.Keys;

/// <summary>
/// The admin API for signing keys: <c>GET /api/admin/keys</c> lists them with their state, <c>POST /api/admin/keys/rotate</c>
/// starts signing with a new key now. Authorized by the <c>admin</c> policy (defined by the admin feature; until it
/// exists, <see cref="KeysAdminExtensions.AddKeysAdminPolicyFallback"/> defines it as "a signed-in user in the admin role").
/// </summary>
public static class KeysAdminExtensions
{
    public const string AdminPolicy = "admin";

    public static IServiceCollection AddKeysAdminPolicyFallback(this IServiceCollection services) =>
        services.AddAuthorization(options =>
        {
            if (options.GetPolicy(AdminPolicy) is null)
            {
                options.AddPolicy(AdminPolicy, policy => policy.RequireAuthenticatedUser().RequireRole("admin"));
            }
        });

    public static WebApplication MapKeysAdmin(this WebApplication app)
    {
        var keys = app.MapGroup("/api/admin/keys").RequireAuthorization(AdminPolicy).DisableAntiforgery().ExcludeFromDescription();
        keys.MapGet("/", (KeyRing ring) => Results.Ok(new KeyList([.. ring.Describe().Select(KeyDocument.From)])));
        keys.MapPost("/rotate", async (KeyRing ring, ILoggerFactory loggers, HttpContext context) =>
        {
            if (!ring.Rotates)
            {
                return Results.Json(new Dictionary<string, string>
                {
                    ["error"] = "not_supported",
                    ["error_description"] = "The signing key is a configured certificate (Keys:SigningCertificate); replace the certificate to rotate it.",
                }, statusCode: StatusCodes.Status409Conflict);
            }

            var active = await ring.RotateNowAsync(context.RequestAborted);
            loggers.CreateLogger(typeof(KeysAdminExtensions)).LogWarning(KeyEvents.RotatedNow,
                "Signing key rotated now by {User}; {KeyId} signs from now on", context.User.Identity?.Name, active.KeyId);
            return Results.Ok(KeyDocument.From(active));
        });
        return app;
    }

    public sealed record KeyList([property: JsonPropertyName("keys")] IReadOnlyList<KeyDocument> Keys);

    public sealed record KeyDocument(
        [property: JsonPropertyName("kid")] string KeyId,
        [property: JsonPropertyName("alg")] string Algorithm,
        [property: JsonPropertyName("slot")] int Slot,
        [property: JsonPropertyName("state")] string State,
        [property: JsonPropertyName("created_at")] DateTimeOffset? CreatedAt,
        [property: JsonPropertyName("activates_at")] DateTimeOffset? ActivatesAt,
        [property: JsonPropertyName("retires_at")] DateTimeOffset? RetiresAt,
        [property: JsonPropertyName("published_until")] DateTimeOffset? PublishedUntil)
    {
        public static KeyDocument From(SigningKeyState key) =>
            new(key.KeyId, key.Algorithm, key.Slot, key.State, key.CreatedAt, key.ActivatesAt, key.RetiresAt, key.PublishedUntil);
    }
}
