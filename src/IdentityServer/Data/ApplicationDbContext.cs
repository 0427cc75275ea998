using IdentityServer.Accounts;
using IdentityServer.Admin;
using IdentityServer.Keys;
using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace IdentityServer.Data;

/// <summary>
/// The one database of the server: Identity's tables, OpenIddict's tables, Data Protection keys and our own.
/// Each provider has a subclass (<see cref="SqliteApplicationDbContext"/> and siblings) only so that each keeps
/// its own migrations and model snapshot; everything else resolves this base type.
/// </summary>
public abstract class ApplicationDbContext(DbContextOptions options)
    : IdentityDbContext<ApplicationUser>(options), IDataProtectionKeyContext
{
    public DbSet<DataProtectionKey> DataProtectionKeys => Set<DataProtectionKey>();

    public DbSet<StoredKey> StoredKeys => Set<StoredKey>();

    public DbSet<AuditEntry> AuditEntries => Set<AuditEntry>();

    private readonly IDbContextDisposalObserver[] _disposalObservers =
        options.FindExtension<CoreOptionsExtension>()?.Interceptors?.OfType<IDbContextDisposalObserver>().ToArray() ?? [];

    /// <summary>
    /// Tells the observers before the context is disposed or returned to the pool (where EF Core resets it
    /// without raising interceptor events). Also called when the pool itself is disposed, for idle contexts.
    /// </summary>
    public override async ValueTask DisposeAsync()
    {
        foreach (var observer in _disposalObservers)
        {
            await observer.ContextDisposingAsync(this);
        }

        await base.DisposeAsync();
    }

    public override void Dispose()
    {
        foreach (var observer in _disposalObservers)
        {
            observer.ContextDisposing(this);
        }

        base.Dispose();
    }

    protected override void OnModelCreating(ModelBuilder builder)
    {
        base.OnModelCreating(builder);
        builder.UseOpenIddict();
        builder.Entity<StoredKey>(key =>
        {
            key.ToTable("StoredKeys");
            key.HasKey(k => k.Id);
            key.Property(k => k.Id).HasMaxLength(64);
            key.Property(k => k.Use).HasMaxLength(8);
            key.Property(k => k.Algorithm).HasMaxLength(16);
            // One key per use and slot: two instances starting together cannot both create a key for the same slot.
            key.HasIndex(k => new { k.Use, k.Slot }).IsUnique();
        });
        AuditEntry.Configure(builder);
        UserSession.Configure(builder);
        Logout.UserSessionClient.Configure(builder);
        Accounts.Email.OutgoingEmail.Configure(builder);
        Clients.UsedClientAssertion.Configure(builder);
        Dpop.UsedDpopProof.Configure(builder);
        Accounts.UsedPasskeyChallenge.Configure(builder);
    }
}

public sealed class SqliteApplicationDbContext(DbContextOptions<SqliteApplicationDbContext> options)
    : ApplicationDbContext(options);

public sealed class SqlServerApplicationDbContext(DbContextOptions<SqlServerApplicationDbContext> options)
    : ApplicationDbContext(options);

public sealed class PostgreSqlApplicationDbContext(DbContextOptions<PostgreSqlApplicationDbContext> options)
    : ApplicationDbContext(options);

/// <summary>
/// An interceptor that keeps state per context (the SQLite write gate) and must drop it when the context is done,
/// including when a pooled context is returned to the pool.
/// </summary>
public interface IDbContextDisposalObserver
{
    void ContextDisposing(DbContext context);

    ValueTask ContextDisposingAsync(DbContext context);
}
