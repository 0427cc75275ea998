using IdentityServer.Data;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// The fixture's helpers (arranging data, discovery, clients, browsers) over a server a test started itself:
/// a second instance, or a server on a database the test controls, or one published under a path
/// (<paramref name="pathBase"/>, its <c>Hosting:PathBase</c>), whose discovery document is there.
/// </summary>
public sealed class AttachedServer(TestServerFactory server, DatabaseProvider provider, string pathBase = "") : ServerFixture
{
    public override DatabaseProvider Provider => provider;

    protected override string DiscoveryPath => pathBase + base.DiscoveryPath;

    public override TestServerFactory Factory => server;

    protected override Task<string> CreateDatabaseAsync() =>
        throw new NotSupportedException("An attached server brings its own database.");
}
