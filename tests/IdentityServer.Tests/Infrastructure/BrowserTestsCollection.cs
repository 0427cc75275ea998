namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// The tests that drive Chromium against server processes, one at a time: each starts a browser and one or two servers,
/// and two of them at once on two cores starve each other past their waits (a click waiting 30 s for a navigation).
/// </summary>
[CollectionDefinition(Name)]
public sealed class BrowserTestsCollection
{
    public const string Name = "Real browser";
}
