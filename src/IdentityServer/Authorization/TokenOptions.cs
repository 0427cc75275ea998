using System.ComponentModel.DataAnnotations;

namespace IdentityServer.Authorization;

/// <summary>The <c>Tokens</c> configuration section: lifetimes and the issuer.</summary>
public sealed class TokenOptions
{
    public const string Section = "Tokens";

    /// <summary>The issuer (<c>iss</c>); by default the URL the server is reached at.</summary>
    public Uri? Issuer { get; set; }

    [Range(typeof(TimeSpan), "00:00:30", "1.00:00:00")]
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    [Range(typeof(TimeSpan), "00:00:30", "1.00:00:00")]
    public TimeSpan IdentityTokenLifetime { get; set; } = TimeSpan.FromMinutes(20);

    [Range(typeof(TimeSpan), "00:01:00", "365.00:00:00")]
    public TimeSpan RefreshTokenLifetime { get; set; } = TimeSpan.FromDays(14);

    [Range(typeof(TimeSpan), "00:00:10", "00:10:00")]
    public TimeSpan AuthorizationCodeLifetime { get; set; } = TimeSpan.FromMinutes(5);

    [Range(typeof(TimeSpan), "00:01:00", "01:00:00")]
    public TimeSpan DeviceCodeLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How often a device may poll the token endpoint (RFC 8628 <c>interval</c>, whole seconds): a pending device code
    /// polled again sooner is answered <c>slow_down</c>.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:01:00")]
    public TimeSpan DevicePollingInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a just-redeemed refresh token may be presented again (a client retrying on a lost response).</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan RefreshTokenReuseLeeway { get; set; } = TimeSpan.FromSeconds(30);
}
