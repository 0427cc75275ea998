using IdentityServer.Admin;
using System.Text.Json.Serialization;

namespace IdentityServer.Keys;

/// <summary>
/// The admin API for keys: <c>GET /api/admin/keys</c> lists them with their state, <c>POST /api/admin/keys/rotate</c>
/// starts signing with a new key now. Part of the admin API group, so it has that API's access rules.
/// </summary>
public static class KeysAdminExtensions
{
    /// <summary>
    /// Maps <c>/keys</c> into the admin API group, so that keys are managed with the same access rules as everything
    /// else there (a bearer token with the admin scope, or an admin's cookie with the antiforgery token) and every
    /// rotation is audited.
    /// </summary>
    public static RouteGroupBuilder MapKeysAdmin(this RouteGroupBuilder adminApi)
    {
        var keys = adminApi.MapGroup("/keys").WithTags("Keys");
        keys.MapGet("", (KeyRing ring, KeyRingCertificate keyRing) =>
                Results.Ok(new KeyList([.. ring.Describe().Select(KeyDocument.From)], [.. ring.DescribeInternal().Select(InternalKeyDocument.From)],
                    KeyRingDocument.From(keyRing))))
            .WithName("ListKeys")
            .WithSummary("Signing and internal keys with their state (next, active, retired), and whether Data Protection's keys are encrypted")
            .Produces<KeyList>();
        keys.MapPost("/rotate", async (KeyRing ring, HttpContext context) =>
            await RotateNowAsync(ring, AdminAccess.ActorOf(context), context.RequestAborted) is { } active
                ? Results.Ok(active)
                : Results.Json(new Dictionary<string, string>
                {
                    ["error"] = "not_supported",
                    ["error_description"] = NotRotatable,
                }, statusCode: StatusCodes.Status409Conflict))
            .WithName("RotateKeyNow").WithSummary("Start signing with a new key now (the internal keys follow five key checks later)")
            .Produces<KeyDocument>();
        return adminApi;
    }

    public const string NotRotatable =
        "The signing key is a configured certificate (Keys:SigningCertificate); replace the certificate to rotate it.";

    /// <summary>
    /// Starts signing with a new key now and audits it, in the rotation's transaction (a rotation is never left
    /// unaudited); null when the key is a configured certificate. Once started it is carried out to the end, whether or
    /// not the caller is still there for the answer (<paramref name="ct"/> is checked before it starts only).
    /// </summary>
    public static async Task<KeyDocument?> RotateNowAsync(KeyRing ring, AdminActor actor, CancellationToken ct)
    {
        if (!ring.Rotates)
        {
            return null;
        }

        ct.ThrowIfCancellationRequested();
        var previous = ring.Describe().Select(KeyDocument.From).Where(k => k.State == "active").ToList();
        var active = await ring.RotateNowAsync(async (services, keys, transaction) =>
        {
            // One entry per key that signs from now on: the signing key, and with ES256 the RSA identity key.
            var audit = services.GetRequiredService<AuditLog>();
            foreach (var key in keys)
            {
                audit.Record(actor, AuditAction.KeyRotated, key.Id, previous.FirstOrDefault(k => k.Use == key.Use),
                    new KeyDocument(key.Id, key.Algorithm, key.Slot, "active", key.CreatedAt, key.ActivatesAt, null, null, key.Use));
            }

            await audit.CommitAsync(transaction, CancellationToken.None);
        }, CancellationToken.None);
        return KeyDocument.From(active);
    }

    public sealed record KeyList(
        [property: JsonPropertyName("keys")] IReadOnlyList<KeyDocument> Keys,
        [property: JsonPropertyName("internal_keys")] IReadOnlyList<InternalKeyDocument> InternalKeys,
        [property: JsonPropertyName("key_ring")] KeyRingDocument KeyRing);

    /// <summary>A key of the tokens only this server reads: <c>mac</c> signs codes and refresh tokens, <c>enc</c> encrypts them.</summary>
    public sealed record InternalKeyDocument(
        [property: JsonPropertyName("kid")] string KeyId,
        [property: JsonPropertyName("use")] string Use,
        [property: JsonPropertyName("alg")] string Algorithm,
        [property: JsonPropertyName("slot")] int Slot,
        [property: JsonPropertyName("state")] string State,
        [property: JsonPropertyName("created_at")] DateTimeOffset CreatedAt,
        [property: JsonPropertyName("activates_at")] DateTimeOffset ActivatesAt,
        [property: JsonPropertyName("retires_at")] DateTimeOffset? RetiresAt,
        [property: JsonPropertyName("deleted_after")] DateTimeOffset? DeletedAfter)
    {
        public static InternalKeyDocument From(InternalKeyState key) =>
            new(key.KeyId, key.Use, key.Algorithm, key.Slot, key.State, key.CreatedAt, key.ActivatesAt, key.RetiresAt, key.DeletedAfter);
    }

    /// <summary>Whether Data Protection's keys (which protect the stored keys and the login cookie) are stored encrypted, and with which certificate.</summary>
    public sealed record KeyRingDocument(
        [property: JsonPropertyName("encrypted")] bool Encrypted,
        [property: JsonPropertyName("certificate_thumbprint")] string? CertificateThumbprint)
    {
        public static KeyRingDocument From(KeyRingCertificate keyRing) =>
            new(keyRing.Certificate is not null, keyRing.Certificate?.Thumbprint);
    }

    public sealed record KeyDocument(
        [property: JsonPropertyName("kid")] string KeyId,
        [property: JsonPropertyName("alg")] string Algorithm,
        [property: JsonPropertyName("slot")] int Slot,
        [property: JsonPropertyName("state")] string State,
        [property: JsonPropertyName("created_at")] DateTimeOffset? CreatedAt,
        [property: JsonPropertyName("activates_at")] DateTimeOffset? ActivatesAt,
        [property: JsonPropertyName("retires_at")] DateTimeOffset? RetiresAt,
        [property: JsonPropertyName("published_until")] DateTimeOffset? PublishedUntil,
        [property: JsonPropertyName("use")] string Use)
    {
        public static KeyDocument From(SigningKeyState key) =>
            new(key.KeyId, key.Algorithm, key.Slot, key.State, key.CreatedAt, key.ActivatesAt, key.RetiresAt, key.PublishedUntil, key.Use);
    }
}
