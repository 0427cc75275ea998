using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Authorization;

/// <summary>
/// A device's polls of the token endpoint (RFC 8628 3.4, 3.5): the device authorization response says how often to
/// poll (<c>interval</c>, <see cref="TokenOptions.DevicePollingInterval"/>); a pending device code polled again sooner
/// is answered <c>slow_down</c>; a device code presented by another client than its own is <c>invalid_grant</c>
/// (RFC 6749 5.2) whatever its state, where OpenIddict's own check comes after the pending one.
/// </summary>
public static class DevicePolling
{
    public static OpenIddictServerBuilder PaceDevicePolls(this OpenIddictServerBuilder server)
    {
        server.Services.AddSingleton<DevicePollTimes>();
        server.Services.AddSingleton<RequireDeviceCodeAtTokenEndpoint>();
        return server.AddEventHandler(CheckDevicePoll.Descriptor).AddEventHandler(AttachPollingInterval.Descriptor);
    }

    /// <summary>The interval as the device authorization response states it (RFC 8628 3.2: whole seconds).</summary>
    private static long WholeSeconds(TimeSpan interval) => (long)Math.Ceiling(interval.TotalSeconds);

    public sealed class AttachPollingInterval(IOptionsMonitor<TokenOptions> options) : IOpenIddictServerHandler<ApplyDeviceAuthorizationResponseContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyDeviceAuthorizationResponseContext>()
            .UseSingletonHandler<AttachPollingInterval>()
            .SetOrder(OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers.ProcessJsonResponse<ApplyDeviceAuthorizationResponseContext>.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public ValueTask HandleAsync(ApplyDeviceAuthorizationResponseContext context)
        {
            if (string.IsNullOrEmpty(context.Error) && context.Response.DeviceCode is not null)
            {
                context.Response[Parameters.Interval] = WholeSeconds(options.CurrentValue.DevicePollingInterval);
            }

            return default;
        }
    }

    /// <summary>
    /// Runs before OpenIddict's check of the device code's entry (which answers authorization_pending): the presenter
    /// first, so that another client's polls neither learn the code's state nor count as the device's, then the pace.
    /// </summary>
    public sealed class CheckDevicePoll(DevicePollTimes polls, IOpenIddictTokenManager tokens, IOptionsMonitor<TokenOptions> options,
        ILogger<CheckDevicePoll> logger) : IOpenIddictServerHandler<ValidateTokenContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ValidateTokenContext>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireDegradedModeDisabled>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireTokenStorageEnabled>()
            .AddFilter<OpenIddictServerHandlerFilters.RequireTokenIdResolved>()
            .AddFilter<RequireDeviceCodeAtTokenEndpoint>()
            .UseScopedHandler<CheckDevicePoll>()
            .SetOrder(OpenIddictServerHandlers.Protection.ValidateTokenEntry.Descriptor.Order - 1)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ValidateTokenContext context)
        {
            if (context.Principal is not { } code || context.TokenId is not { Length: > 0 } tokenId)
            {
                return;
            }

            // No presenter at all is OpenIddict's to refuse (it throws: a device code always has one).
            var presenters = code.GetPresenters();
            if (!presenters.IsDefaultOrEmpty && (context.Request?.ClientId is not { } clientId || !presenters.Contains(clientId, StringComparer.Ordinal)))
            {
                logger.LogWarning(TokenEvents.DeviceCodeOfAnotherClient, "Client {ClientId} presented a device code issued to {Presenters}: refused",
                    context.Request?.ClientId, presenters);
                context.Reject(Errors.InvalidGrant, "The device code was issued to another client.");
                return;
            }

            var interval = options.CurrentValue.DevicePollingInterval;
            if (polls.Record(tokenId, interval) && await tokens.FindByIdAsync(tokenId, context.CancellationToken) is { } entry
                && await tokens.HasStatusAsync(entry, Statuses.Inactive, context.CancellationToken))
            {
                context.Reject(Errors.SlowDown, string.Create(CultureInfo.InvariantCulture,
                    $"The device code was polled sooner than {WholeSeconds(interval)} seconds after the last poll: poll more slowly."));
            }
        }
    }

    /// <summary>
    /// A device code at the token endpoint: the poll check (and the token manager it needs) is made for nothing else, not
    /// for every token an introspection or a refresh validates.
    /// </summary>
    public sealed class RequireDeviceCodeAtTokenEndpoint : IOpenIddictServerHandlerFilter<ValidateTokenContext>
    {
        public ValueTask<bool> IsActiveAsync(ValidateTokenContext context) =>
            new(context.EndpointType is OpenIddictServerEndpointType.Token && context.Principal?.HasTokenType(TokenTypeIdentifiers.Private.DeviceCode) is true);
    }
}

/// <summary>
/// When each device code was last polled, in this instance's memory: the polls a load balancer spreads over several
/// instances are each seen by one of them, so a device polling too often may be told to slow down later than it
/// should (or, over n instances, not at all while it polls at least every interval / n), but a device that keeps the
/// interval is never told to. A database record would be exact, at the price of a write on every poll to a row the
/// approval writes too. Only device codes that were validated are recorded, and a poll older than the interval is
/// forgotten (it can no longer make a poll too soon), so the memory holds at most the codes polled within one interval.
/// </summary>
public sealed class DevicePollTimes(TimeProvider clock)
{
    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastPolls = new(StringComparer.Ordinal);
    private long _nextSweepTicks;

    /// <summary>Records a poll of the device code (by its token id); true when it came sooner than <paramref name="interval"/> (less the jitter allowance) after the last.</summary>
    public bool Record(string tokenId, TimeSpan interval)
    {
        var now = clock.GetUtcNow();
        var tooSoon = false;
        _lastPolls.AddOrUpdate(tokenId, now, (_, last) =>
        {
            tooSoon = now - last < interval - JitterAllowance(interval);
            return now;
        });
        ForgetOldPolls(now, interval);
        return tooSoon;
    }

    /// <summary>
    /// A device that polls on a timer from when it sent the last poll can have two polls arrive a little less than the
    /// interval apart (the network's jitter): half a second (a tenth of a short interval) is not held against it.
    /// </summary>
    private static TimeSpan JitterAllowance(TimeSpan interval) =>
        interval / 10 < TimeSpan.FromMilliseconds(500) ? interval / 10 : TimeSpan.FromMilliseconds(500);

    /// <summary>At most once an interval: drops the polls older than it.</summary>
    private void ForgetOldPolls(DateTimeOffset now, TimeSpan interval)
    {
        var due = Interlocked.Read(ref _nextSweepTicks);
        if (now.UtcTicks < due || Interlocked.CompareExchange(ref _nextSweepTicks, (now + interval).UtcTicks, due) != due)
        {
            return;
        }

        foreach (var (tokenId, last) in _lastPolls)
        {
            if (now - last >= interval)
            {
                _lastPolls.TryRemove(KeyValuePair.Create(tokenId, last));
            }
        }
    }
}
