using System.ComponentModel.DataAnnotations;

namespace IdentityServer.Performance;

/// <summary>The <c>Performance</c> configuration section: in-memory caches in front of the database.</summary>
public sealed class PerformanceOptions
{
    public const string Section = "Performance";

    /// <summary>
    /// How long a client (application) or scope read from the database is kept in memory. Changes made through this
    /// instance take effect at once; changes made through another instance on the same database within this time.
    /// Zero turns the cache off.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan EntityCacheLifetime { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a successful client secret verification is remembered (keyed by a keyed hash of the presented secret
    /// and the stored hash), so that the deliberately slow hash runs once per client and period, not per request.
    /// Zero turns it off.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan SecretVerificationCacheLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Token entries (new ones, and a redeemed code or refresh token with the entries that replace it) are written by one
    /// group-commit writer (true) or by each request itself (false).
    /// </summary>
    public bool GroupCommitTokenWrites { get; set; } = true;

    /// <summary>On SQLite, writes from this process take turns in memory (true) rather than meeting on SQLite's lock (false).</summary>
    public bool SerializeSqliteWrites { get; set; } = true;

    /// <summary>
    /// Whether identity tokens get a token entry like access and refresh tokens (false: they do not; see
    /// <see cref="IdentityTokenStorage"/>).
    /// </summary>
    public bool StoreIdentityTokens { get; set; }

    /// <summary>The most requests whose token entries the group-commit writer writes in one transaction.</summary>
    [Range(1, 10_000)]
    public int TokenWriteBatchLimit { get; set; } = 256;

    /// <summary>
    /// How often the C heap's freed memory is handed back to the operating system (Linux with glibc; see
    /// <see cref="NativeHeapTrimmer"/>). Zero turns it off.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan NativeHeapTrimInterval { get; set; } = TimeSpan.FromSeconds(5);
}
