using System.Reflection;
using Microsoft.Extensions.Logging;

namespace IdentityServer.Tests.Hosting;

/// <summary>Log events are documented and alerted on by id, so no two of the server's events may share one.</summary>
public sealed class EventIdTests
{
    [Fact]
    public void Every_log_event_of_the_server_has_its_own_id()
    {
        var events = typeof(IdentityServer.Hosting.HostingEvents).Assembly.GetTypes()
            .SelectMany(type => type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Where(field => field.FieldType == typeof(EventId))
            .Select(field => (Name: $"{field.DeclaringType!.Name}.{field.Name}", Event: (EventId)field.GetValue(null)!))
            .ToList();

        Assert.True(events.Count > 30, $"Only {events.Count} events found: the scan no longer sees them.");
        var shared = events.GroupBy(e => e.Event.Id).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(e => e.Name))}").ToList();
        Assert.True(shared.Count == 0, "Event ids used twice: " + string.Join("; ", shared));
    }
}
