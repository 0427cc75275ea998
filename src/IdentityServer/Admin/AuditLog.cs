using System.Text.Json;
using System.Text.Json.Serialization;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace IdentityServer.Admin;

/// <summary>Who is making an admin change: a person in the admin role, or a machine client with the admin scope.</summary>
public sealed record AdminActor(string Type, string Id, string? Name, string? ClientId, string? RequestId)
{
    public const string UserType = "user";
    public const string ClientType = "client";

    /// <summary>Dynamic client registration: anyone from an address (<see cref="Id"/>), or a registered client managing itself.</summary>
    public const string RegistrationType = "registration";

    /// <summary>The <c>Seed</c> configuration, applied at start (<see cref="Clients.Seeder"/>).</summary>
    public const string SeedType = "seed";

    public static readonly AdminActor Seed = new(SeedType, "configuration", "the Seed configuration", null, null);

    public override string ToString() => Type switch
    {
        ClientType => $"client {Id}",
        SeedType => "the Seed configuration at start",
        RegistrationType => ClientId is null ? $"dynamic registration from {Id}" : $"client {ClientId} through its registration, from {Id}",
        _ => $"user {Name ?? Id}{(ClientId is null ? "" : $" via client {ClientId}")}",
    };
}

/// <summary>An audited action: its name in the audit table, the kind of entry it changes, its log event.</summary>
public sealed record AuditAction(string Name, string TargetType, EventId EventId)
{
    public static readonly AuditAction ClientCreated = new("client.created", "client", AdminEvents.ClientCreated);
    public static readonly AuditAction ClientUpdated = new("client.updated", "client", AdminEvents.ClientUpdated);
    public static readonly AuditAction ClientDeleted = new("client.deleted", "client", AdminEvents.ClientDeleted);
    public static readonly AuditAction ClientSecretRotated = new("client.secret_rotated", "client", AdminEvents.ClientSecretRotated);
    public static readonly AuditAction ScopeCreated = new("scope.created", "scope", AdminEvents.ScopeCreated);
    public static readonly AuditAction ScopeUpdated = new("scope.updated", "scope", AdminEvents.ScopeUpdated);
    public static readonly AuditAction ScopeDeleted = new("scope.deleted", "scope", AdminEvents.ScopeDeleted);
    public static readonly AuditAction UserCreated = new("user.created", "user", AdminEvents.UserCreated);
    public static readonly AuditAction UserUpdated = new("user.updated", "user", AdminEvents.UserUpdated);
    public static readonly AuditAction UserDeleted = new("user.deleted", "user", AdminEvents.UserDeleted);
    public static readonly AuditAction UserPasswordReset = new("user.password_reset", "user", AdminEvents.UserPasswordReset);
    public static readonly AuditAction UserSessionEnded = new("user.session_ended", "user", AdminEvents.UserSessionEnded);
    public static readonly AuditAction UserSessionsEnded = new("user.sessions_ended", "user", AdminEvents.UserSessionsEnded);
    public static readonly AuditAction UserLoginRemoved = new("user.login_removed", "user", AdminEvents.UserLoginRemoved);
    public static readonly AuditAction RoleCreated = new("role.created", "role", AdminEvents.RoleCreated);
    public static readonly AuditAction RoleDeleted = new("role.deleted", "role", AdminEvents.RoleDeleted);
    public static readonly AuditAction KeyRotated = new("key.rotated", "key", IdentityServer.Keys.KeyEvents.RotatedNow);
}

/// <summary>
/// Writes each admin change to the audit table in the same transaction as the change itself (both or neither), and
/// to the log once committed. Documents are recorded as the admin API shows them, so never with a secret.
/// </summary>
public sealed class AuditLog(ApplicationDbContext db, TimeProvider clock, ILogger<AuditLog> logger)
{
    /// <summary>
    /// How admin documents are written (audit entries and API responses): nulls left out, and characters such as
    /// quotes kept readable (the JSON is never embedded in HTML unencoded: the pages encode it).
    /// </summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly List<(AuditEntry Entry, AdminActor Actor)> _pending = [];

    public Task<IDbContextTransaction> BeginAsync(CancellationToken ct) => db.Database.BeginTransactionAsync(ct);

    /// <summary>
    /// Runs <paramref name="change"/> in a transaction of its own, from the start again if the database aborted it to
    /// break a deadlock (<see cref="DeadlockRetry"/>), as a change that revokes a user's tokens can be. The change
    /// must read everything it decides on inside the transaction: a retry starts from an empty context, and
    /// <paramref name="forgetReads"/> makes the request's own caches forget what the aborted attempt read.
    /// </summary>
    public Task<T> InTransactionAsync<T>(Func<IDbContextTransaction, Task<T>> change, CancellationToken ct, Action? forgetReads = null) =>
        DeadlockRetry.RunAsync(async () =>
        {
            await using var transaction = await BeginAsync(ct);
            return await change(transaction);
        }, logger, "An admin change", beforeRetry: () =>
        {
            db.ChangeTracker.Clear();
            _pending.Clear();
            forgetReads?.Invoke();
        });

    /// <summary>Adds an entry to the current transaction; it is saved and logged by <see cref="CommitAsync"/>.</summary>
    public void Record(AdminActor actor, AuditAction action, string targetId, object? before, object? after)
    {
        var entry = new AuditEntry
        {
            OccurredAt = clock.GetUtcNow(),
            ActorType = actor.Type,
            ActorId = actor.Id,
            ActorName = actor.Name,
            ActorClientId = actor.ClientId,
            Action = action.Name,
            TargetType = action.TargetType,
            TargetId = targetId,
            Before = before is null ? null : JsonSerializer.Serialize(before, Json),
            After = after is null ? null : JsonSerializer.Serialize(after, Json),
            RequestId = actor.RequestId,
        };
        db.AuditEntries.Add(entry);
        _pending.Add((entry, actor));
    }

    public async Task CommitAsync(IDbContextTransaction transaction, CancellationToken ct)
    {
        await db.SaveChangesAsync(ct);
        await transaction.CommitAsync(ct);
        foreach (var (entry, actor) in _pending)
        {
            var action = Actions.GetValueOrDefault(entry.Action);
            logger.LogInformation(action?.EventId ?? default, "Admin change {Action} on {TargetType} {TargetId} by {Actor} (audit entry {AuditId})",
                entry.Action, entry.TargetType, entry.TargetId, actor.ToString(), entry.Id);
        }

        _pending.Clear();
    }

    /// <summary>The most recent entries first, optionally for one entry (target) and before a given id (the next page).</summary>
    public async Task<IReadOnlyList<AuditEntry>> ListAsync(int limit, long? beforeId, string? targetType, string? targetId, CancellationToken ct)
    {
        var query = db.AuditEntries.AsNoTracking();
        if (beforeId is { } before)
        {
            query = query.Where(e => e.Id < before);
        }

        if (!string.IsNullOrEmpty(targetType))
        {
            query = query.Where(e => e.TargetType == targetType);
        }

        if (!string.IsNullOrEmpty(targetId))
        {
            query = query.Where(e => e.TargetId == targetId);
        }

        return await query.OrderByDescending(e => e.Id).Take(Math.Clamp(limit, 1, 200)).ToListAsync(ct);
    }

    private static readonly Dictionary<string, AuditAction> Actions = typeof(AuditAction)
        .GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
        .Select(f => (AuditAction)f.GetValue(null)!)
        .ToDictionary(a => a.Name);
}
