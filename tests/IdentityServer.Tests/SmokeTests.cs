using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests;

public abstract class SmokeTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_public_client_signs_a_user_in_with_code_and_pkce()
    {
        var client = await server.CreatePublicClientAsync(consentType: "explicit");
        var user = await server.CreateUserAsync();
        var tokens = await OAuth.SignInAndRedeemAsync(server, server.CreateBrowser(), client, user, "openid profile offline_access");
        Assert.Equal(user.Id, Jwt.Payload(tokens.GetProperty("id_token").GetString()!).GetProperty("sub").GetString());
        Assert.Equal(HttpStatusCode.OK, (await server.CreateClient().GetAsync("/health/ready")).StatusCode);
    }
}

public sealed class SqliteSmokeTests(SqliteServerFixture server) : SmokeTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlSmokeTests(PostgreSqlServerFixture server) : SmokeTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
