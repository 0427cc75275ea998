using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;

namespace IdentityServer.Tests.Authorization;

/// <summary>The permanent authorization that remembers a user's consent to a client.</summary>
public abstract class RememberedConsentTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    /// <summary>
    /// A user's first two sign-ins to an implicit-consent client at the same moment (two tabs) remember the consent
    /// once: each used to find no permanent authorization and make one. The race is made on purpose: the sign-in on a
    /// second instance, about to store its permanent authorization, starts the other on the first instance and waits
    /// until it is done or waits for the first's turn.
    /// </summary>
    [SkippableFact]
    public async Task Two_first_sign_ins_to_an_implicit_consent_client_at_the_same_moment_remember_the_consent_once()
    {
        var client = await server.CreatePublicClientAsync(consentType: "implicit");
        var user = await server.CreateUserAsync();
        var browser = server.CreateBrowser();
        // Signed in (through another client), with no consent to this client yet.
        var elsewhere = await server.CreatePublicClientAsync();
        Assert.Contains("code", (await OAuth.AuthorizeAsync(browser, await OAuth.AuthorizeUrlAsync(server, elsewhere.ClientId, "openid", Pkce.Create()), user)).Keys);
        var firstTab = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create());
        var secondTab = await OAuth.AuthorizeUrlAsync(server, client.ClientId, "openid profile", Pkce.Create());

        Task<Dictionary<string, string>>? other = null;
        await using var instance = server.InstanceThatStepsInBeforeSaving<OpenIddictEntityFrameworkCoreAuthorization>(
            e => e.State == EntityState.Added && e.Entity.Type == OpenIddictConstants.AuthorizationTypes.Permanent, async () =>
            {
                other = OAuth.AuthorizeAsync(browser, firstTab, null);
                await server.UntilDoneOrWaitingForALockAsync(other, "pg_advisory_xact_lock");
            });
        var sameBrowserOnTheSecondInstance = new Browser(new() { [TestServerFactory.Authority.Host] = instance.Server.CreateHandler() });
        sameBrowserOnTheSecondInstance.Cookies.Add(browser.Cookies.GetAllCookies());

        var mine = await OAuth.AuthorizeAsync(sameBrowserOnTheSecondInstance, secondTab, null);

        Assert.Contains("code", mine.Keys);
        Assert.NotNull(other);
        Assert.Contains("code", (await other).Keys);
        await using var scope = server.Factory.Services.CreateAsyncScope();
        var applications = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var applicationId = await applications.GetIdAsync((await applications.FindByClientIdAsync(client.ClientId))!);
        var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
        Assert.Equal(1, await db.Set<OpenIddictEntityFrameworkCoreAuthorization>().CountAsync(a =>
            a.Subject == user.Id && EF.Property<string>(a, "ApplicationId") == applicationId && a.Type == OpenIddictConstants.AuthorizationTypes.Permanent));
    }
}

public sealed class SqliteRememberedConsentTests(SqliteServerFixture server)
    : RememberedConsentTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlRememberedConsentTests(PostgreSqlServerFixture server)
    : RememberedConsentTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
