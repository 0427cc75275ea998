using System.Net;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenIddict.Abstractions;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A confidential client authenticates with its registered token_endpoint_auth_method (RFC 7591 section 2, OpenID
/// Connect Core 1.0 section 9), at every endpoint where clients authenticate: the other method gets 401 invalid_client,
/// even with the right secret.
/// </summary>
public abstract class ClientAuthMethodTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    public static readonly TheoryData<string, string> EndpointsAndMethods = new()
    {
        { "token_endpoint", "client_secret_basic" },
        { "token_endpoint", "client_secret_post" },
        { "introspection_endpoint", "client_secret_basic" },
        { "introspection_endpoint", "client_secret_post" },
        { "revocation_endpoint", "client_secret_basic" },
        { "revocation_endpoint", "client_secret_post" },
        { "device_authorization_endpoint", "client_secret_basic" },
        { "device_authorization_endpoint", "client_secret_post" },
        { "pushed_authorization_request_endpoint", "client_secret_basic" },
        { "pushed_authorization_request_endpoint", "client_secret_post" },
    };

    [SkippableFact]
    public async Task A_client_registered_for_client_secret_basic_gets_invalid_client_for_its_secret_in_the_form_and_a_token_with_Basic()
    {
        var client = await CreateClientAsync("client_secret_basic");

        var refused = await SendAsync("token_endpoint", client, "client_secret_post");
        await ExpectInvalidClientAsync(refused);
        Assert.Contains(refused.Headers.WwwAuthenticate, h => h.Scheme == "Basic");

        await ExpectSuccessAsync("token_endpoint", await SendAsync("token_endpoint", client, "client_secret_basic"));
    }

    /// <summary>
    /// A Basic header that is not base64 of client_id:client_secret is a failed client authentication (RFC 6749 5.2):
    /// 401 invalid_client at every endpoint that takes one, not 400 invalid_request.
    /// </summary>
    [SkippableTheory]
    [InlineData("token_endpoint", "not base64!")]
    [InlineData("token_endpoint", "bm8tY29sb24")] // "no-colon"
    [InlineData("introspection_endpoint", "not base64!")]
    [InlineData("revocation_endpoint", "bm8tY29sb24=")]
    [InlineData("pushed_authorization_request_endpoint", "not base64!")]
    [InlineData("device_authorization_endpoint", "not base64!")]
    public async Task A_malformed_Basic_header_is_invalid_client(string endpoint, string credentials)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, await server.EndpointAsync(endpoint))
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["token"] = "not-a-token" }),
        };
        request.Headers.TryAddWithoutValidation("Authorization", $"Basic {credentials}");

        await ExpectInvalidClientAsync(await server.CreateClient().SendAsync(request));
    }

    [SkippableFact]
    public async Task A_client_registered_for_client_secret_post_gets_invalid_client_for_Basic_and_a_token_with_its_secret_in_the_form()
    {
        var client = await CreateClientAsync("client_secret_post");

        await ExpectInvalidClientAsync(await SendAsync("token_endpoint", client, "client_secret_basic"));

        await ExpectSuccessAsync("token_endpoint", await SendAsync("token_endpoint", client, "client_secret_post"));
    }

    /// <summary>Every endpoint where clients authenticate, each registered method: the other one is refused, the registered one accepted.</summary>
    [SkippableTheory]
    [MemberData(nameof(EndpointsAndMethods))]
    public async Task At_every_endpoint_the_other_method_gets_invalid_client_and_the_registered_one_is_accepted(string endpoint, string registered)
    {
        var client = await CreateClientAsync(registered);
        var other = registered == "client_secret_basic" ? "client_secret_post" : "client_secret_basic";

        await ExpectInvalidClientAsync(await SendAsync(endpoint, client, other));

        await ExpectSuccessAsync(endpoint, await SendAsync(endpoint, client, registered));
    }

    /// <summary>A client without a registered method in its document is a client_secret_basic client (RFC 7591 2).</summary>
    [SkippableFact]
    public async Task A_client_registered_without_a_method_is_a_client_secret_basic_client()
    {
        var client = await server.CreateClientAsync(c =>
        {
            c.ClientSecret = Unique.Secret();
            c.GrantTypes = ["client_credentials"];
        });

        await ExpectInvalidClientAsync(await SendAsync("token_endpoint", client, "client_secret_post"));
        await ExpectSuccessAsync("token_endpoint", await SendAsync("token_endpoint", client, "client_secret_basic"));
    }

    /// <summary>A private_key_jwt client has no secret (the document refuses one), so any secret it sends is refused.</summary>
    [SkippableTheory]
    [InlineData("client_secret_basic")]
    [InlineData("client_secret_post")]
    public async Task A_private_key_jwt_client_sending_a_secret_gets_invalid_client(string method)
    {
        var signing = await SigningClient.CreateAsync(server);
        var client = new TestClient(signing.ClientId, Unique.Secret(), new());

        await ExpectInvalidClientAsync(await SendAsync("token_endpoint", client, method));
    }

    /// <summary>
    /// A private_key_jwt client that still holds a secret (stored before it moved to its keys, say) cannot use it: only
    /// its assertions authenticate it.
    /// </summary>
    [SkippableTheory]
    [InlineData("client_secret_basic")]
    [InlineData("client_secret_post")]
    public async Task A_private_key_jwt_client_that_still_holds_a_secret_gets_invalid_client_for_it_and_a_token_for_an_assertion(string method)
    {
        var signing = await SigningClient.CreateAsync(server);
        var secret = Unique.Secret();
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>().SetClientSecretAsync(signing.ClientId, secret);
        }

        await ExpectInvalidClientAsync(await SendAsync("token_endpoint", new TestClient(signing.ClientId, secret, new()), method));

        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["client_id"] = signing.ClientId,
            ["client_assertion_type"] = SigningClient.AssertionType,
            ["client_assertion"] = await signing.AssertionAsync(),
        });
        await ExpectSuccessAsync("token_endpoint", response);
    }

    /// <summary>Public clients are as before: OpenIddict refuses a secret from them, and takes their client_id alone.</summary>
    [SkippableFact]
    public async Task A_public_client_still_revokes_with_its_client_id_alone()
    {
        var client = await server.CreatePublicClientAsync();

        var response = await OAuth.RevokeAsync(server, client, "not-a-token");

        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    /// <summary>The refusal is a warning with event id 5010 naming the client and both methods, never the secret.</summary>
    [SkippableFact]
    public async Task A_refusal_is_logged_as_event_5010_naming_the_client_and_both_methods_but_not_the_secret()
    {
        var log = new WarningLog();
        await using var factory = new TestServerFactory(new Dictionary<string, string?>(server.Settings),
            testServices: services => services.AddSingleton<ILoggerProvider>(log));
        var attached = new AttachedServer(factory, server.Provider);
        var client = await CreateClientAsync("client_secret_basic");

        await ExpectInvalidClientAsync(await SendAsync("token_endpoint", client, "client_secret_post", attached));

        var entry = Assert.Single(log.Entries, e => e.EventId == 5010);
        Assert.Equal(LogLevel.Warning, entry.Level);
        Assert.Contains(client.ClientId, entry.Message);
        Assert.Contains("registered for client_secret_basic", entry.Message);
        Assert.Contains("authenticated with client_secret_post", entry.Message);
        Assert.DoesNotContain(log.Entries, e => e.Message.Contains(client.ClientSecret!, StringComparison.Ordinal));
    }

    private Task<TestClient> CreateClientAsync(string method) =>
        server.CreateConfidentialClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = method;
            c.GrantTypes = ["client_credentials", "authorization_code", "urn:ietf:params:oauth:grant-type:device_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
        });

    /// <summary>A valid request to <paramref name="endpoint"/>, the client authenticated with <paramref name="method"/>.</summary>
    private async Task<HttpResponseMessage> SendAsync(string endpoint, TestClient client, string method, ServerFixture? on = null)
    {
        var pkce = Pkce.Create();
        var form = endpoint switch
        {
            "token_endpoint" => new Dictionary<string, string> { ["grant_type"] = "client_credentials" },
            "introspection_endpoint" or "revocation_endpoint" => new Dictionary<string, string> { ["token"] = "not-a-token" },
            "pushed_authorization_request_endpoint" => new Dictionary<string, string>
            {
                ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = "openid",
                ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
            },
            "device_authorization_endpoint" => new Dictionary<string, string> { ["scope"] = "openid" },
            _ => throw new ArgumentOutOfRangeException(nameof(endpoint), endpoint, null),
        };
        if (method == "client_secret_post")
        {
            form["client_id"] = client.ClientId;
            form["client_secret"] = client.ClientSecret!;
        }

        return await OAuth.PostFormAsync(on ?? server, endpoint, form, basicAuth: method == "client_secret_basic" ? client : null);
    }

    private static async Task ExpectInvalidClientAsync(HttpResponseMessage response)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_client", json.GetProperty("error").GetString());
    }

    private static async Task ExpectSuccessAsync(string endpoint, HttpResponseMessage response)
    {
        var expected = endpoint == "pushed_authorization_request_endpoint" ? HttpStatusCode.Created : HttpStatusCode.OK;
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }
}

public sealed class SqliteClientAuthMethodTests(SqliteServerFixture server)
    : ClientAuthMethodTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlClientAuthMethodTests(PostgreSqlServerFixture server)
    : ClientAuthMethodTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
