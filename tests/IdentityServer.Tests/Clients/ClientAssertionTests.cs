using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using IdentityServer.Clients;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using static IdentityServer.Tests.Clients.SigningClient;

namespace IdentityServer.Tests.Clients;

/// <summary>
/// A private_key_jwt client's assertion authenticates it once (OpenID Connect Core 1.0 section 9): a second use, at any
/// endpoint and on any instance, is refused with invalid_client; an assertion whose use cannot be tracked (no jti, an
/// exp too far ahead) is refused too.
/// </summary>
public abstract class ClientAssertionTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_replayed_assertion_is_refused_with_invalid_client_after_its_first_use_got_a_token()
    {
        var client = await SigningClient.CreateAsync(server);
        var assertion = await client.AssertionAsync();

        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, assertion));

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client, assertion), "already used");
    }

    [SkippableFact]
    public async Task Two_assertions_with_different_jtis_both_get_a_token()
    {
        var client = await SigningClient.CreateAsync(server);

        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, await client.AssertionAsync()));
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, await client.AssertionAsync()));
    }

    [SkippableFact]
    public async Task The_same_jti_is_used_once_per_client_not_once_for_all()
    {
        var (first, second) = (await SigningClient.CreateAsync(server), await SigningClient.CreateAsync(server));
        var jti = Guid.NewGuid().ToString("N");

        await ExpectTokenAsync(await ClientCredentialsAsync(server, first, await first.AssertionAsync(payload: p => p["jti"] = jti)));
        await ExpectTokenAsync(await ClientCredentialsAsync(server, second, await second.AssertionAsync(payload: p => p["jti"] = jti)));
    }

    /// <summary>Requests with one assertion at the same moment, half of them on a second instance: one gets a token.</summary>
    [SkippableFact]
    public async Task Of_concurrent_requests_with_one_assertion_on_two_instances_exactly_one_succeeds()
    {
        await using var secondFactory = server.StartServer();
        var second = new AttachedServer(secondFactory, server.Provider);
        var client = await SigningClient.CreateAsync(server);
        var assertion = await client.AssertionAsync();

        var responses = await Task.WhenAll(Enumerable.Range(0, 12)
            .Select(i => ClientCredentialsAsync(i % 2 == 0 ? server : second, client, assertion)));

        var statuses = responses.Select(r => r.StatusCode).ToList();
        Assert.True(statuses.Count(s => s == HttpStatusCode.OK) == 1, string.Join(", ", statuses));
        foreach (var refused in responses.Where(r => r.StatusCode != HttpStatusCode.OK))
        {
            await ExpectInvalidClientAsync(refused, "already used");
        }
    }

    /// <summary>The record is in the database: another instance (or this one after a restart) refuses the replay.</summary>
    [SkippableFact]
    public async Task An_assertion_used_on_one_instance_is_refused_by_another()
    {
        var client = await SigningClient.CreateAsync(server);
        var assertion = await client.AssertionAsync();
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, assertion));

        await using var secondFactory = server.StartServer();
        await ExpectInvalidClientAsync(await ClientCredentialsAsync(new AttachedServer(secondFactory, server.Provider), client, assertion), "already used");
    }

    /// <summary>
    /// Every endpoint that authenticates clients records the assertion: used there first, it is refused there again and
    /// at the token endpoint.
    /// </summary>
    [SkippableTheory]
    [InlineData("introspection_endpoint", HttpStatusCode.OK)]
    [InlineData("revocation_endpoint", HttpStatusCode.OK)]
    [InlineData("pushed_authorization_request_endpoint", HttpStatusCode.Created)]
    [InlineData("device_authorization_endpoint", HttpStatusCode.OK)]
    public async Task An_assertion_used_at_any_endpoint_is_refused_there_and_at_the_token_endpoint(string endpoint, HttpStatusCode success)
    {
        var client = await SigningClient.CreateAsync(server, c =>
        {
            c.GrantTypes = ["client_credentials", "authorization_code", "urn:ietf:params:oauth:grant-type:device_code"];
            c.RedirectUris = [OAuth.AppRedirectUri];
            c.Scope = "openid";
        });
        var assertion = await client.AssertionAsync();
        var pkce = Pkce.Create();
        Dictionary<string, string> Form() => new(endpoint switch
        {
            "introspection_endpoint" or "revocation_endpoint" => new Dictionary<string, string> { ["token"] = "not-a-token" },
            "pushed_authorization_request_endpoint" => new Dictionary<string, string>
            {
                ["response_type"] = "code", ["redirect_uri"] = OAuth.AppRedirectUri, ["scope"] = "openid",
                ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
            },
            _ => new Dictionary<string, string> { ["scope"] = "openid" },
        })
        {
            ["client_id"] = client.ClientId,
            ["client_assertion_type"] = SigningClient.AssertionType,
            ["client_assertion"] = assertion,
        };

        var first = await OAuth.PostFormAsync(server, endpoint, Form());
        Assert.True(first.StatusCode == success, $"{(int)first.StatusCode}: {await first.Content.ReadAsStringAsync()}");

        await ExpectInvalidClientAsync(await OAuth.PostFormAsync(server, endpoint, Form()), "already used");
        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client, assertion), "already used");
    }

    /// <summary>Every algorithm discovery lists for private_key_jwt is accepted, with the client's RSA or EC key of its size.</summary>
    [SkippableFact]
    public async Task An_assertion_signed_with_each_algorithm_discovery_lists_gets_a_token()
    {
        var client = await SigningClient.CreateAsync(server);
        var discovery = await OAuth.ReadJsonAsync(await server.CreateClient().GetAsync("/.well-known/openid-configuration"));
        var listed = Jwt.Strings(discovery.GetProperty("token_endpoint_auth_signing_alg_values_supported"));
        Assert.Equal(["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"], listed.Order(StringComparer.Ordinal));

        foreach (var algorithm in listed)
        {
            await SigningClient.ExpectTokenAsync(await SigningClient.ClientCredentialsAsync(server, client,
                await client.AssertionAsync(header: h => h["alg"] = algorithm)));
        }
    }

    /// <summary>Once the assertion passed, a request's other faults keep their own errors: a refresh token that is not one is invalid_grant.</summary>
    [SkippableFact]
    public async Task A_request_refused_after_its_assertion_passed_keeps_its_own_error()
    {
        var client = await SigningClient.CreateAsync(server, c => c.GrantTypes = ["client_credentials", "refresh_token"]);

        var response = await OAuth.PostTokenAsync(server, WithAssertion(client.ClientId, await client.AssertionAsync(),
            new() { ["grant_type"] = "refresh_token", ["refresh_token"] = "not-a-refresh-token" }));

        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_grant", json.GetProperty("error").GetString());
    }

    [SkippableFact]
    public async Task An_assertion_without_a_jti_is_refused_with_invalid_client()
    {
        var client = await SigningClient.CreateAsync(server);

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client, await client.AssertionAsync(payload: p => p.Remove("jti"))), "jti");
    }

    /// <summary>
    /// An assertion that is not valid is invalid_client (RFC 7523 3.2), whichever check refuses it: OpenIddict's own said
    /// invalid_request for a claim it could not find (no exp; an audience array naming more than the issuer) and
    /// invalid_grant for a client_id sent beside it that is not its issuer.
    /// </summary>
    [SkippableTheory]
    [InlineData("no exp")]
    [InlineData("aud the issuer and the token endpoint")]
    [InlineData("client_id of another client")]
    public async Task An_assertion_refused_by_any_check_is_invalid_client(string form)
    {
        var client = await SigningClient.CreateAsync(server);
        var (issuer, tokenEndpoint) = (await server.EndpointAsync("issuer"), await server.EndpointAsync("token_endpoint"));
        var assertion = await client.AssertionAsync(payload: p =>
        {
            if (form == "no exp")
            {
                p.Remove("exp");
            }
            else if (form.StartsWith("aud", StringComparison.Ordinal))
            {
                p["aud"] = new[] { issuer, tokenEndpoint };
            }
        });
        var sentAs = form == "client_id of another client" ? (await server.CreatePublicClientAsync()).ClientId : client.ClientId;

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, sentAs, assertion));
    }

    [SkippableFact]
    /// <summary>
    /// At most ten minutes, give or take the five minutes of clock skew OpenIddict allows: a ten-minute assertion (MSAL
    /// makes them) from a client whose clock runs two minutes ahead is accepted; one sixteen minutes ahead is not.
    /// </summary>
    public async Task An_assertion_that_expires_more_than_ten_minutes_ahead_is_refused_and_one_within_them_is_accepted()
    {
        var client = await SigningClient.CreateAsync(server);
        long In(TimeSpan span) => DateTimeOffset.UtcNow.Add(span).ToUnixTimeSeconds();

        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client,
            await client.AssertionAsync(payload: p => p["exp"] = In(TimeSpan.FromMinutes(16)))), "exp");
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client,
            await client.AssertionAsync(payload: p => p["exp"] = In(TimeSpan.FromMinutes(9)))));
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client,
            await client.AssertionAsync(payload: p => p["exp"] = In(TimeSpan.FromMinutes(12)))));
    }

    /// <summary>Dates .NET cannot hold (OpenIddict converted them unchecked: a 500) are the client's error, whatever the claim.</summary>
    [SkippableTheory]
    [InlineData("exp", 253402300800L)]
    [InlineData("exp", 253402300799L)]
    [InlineData("exp", -62135596801L)]
    [InlineData("iat", 253402300800L)]
    [InlineData("iat", long.MaxValue)]
    [InlineData("nbf", -62135596801L)]
    public async Task An_assertion_with_a_date_out_of_range_is_refused_as_invalid_client(string claim, long seconds)
    {
        var client = await SigningClient.CreateAsync(server);

        var response = await ClientCredentialsAsync(server, client, await client.AssertionAsync(payload: p => p[claim] = seconds));

        await ExpectInvalidClientAsync(response, claim);
    }

    /// <summary>A record past its expiry (not pruned yet) no longer holds its jti: the old assertion is refused as expired anyway.</summary>
    [SkippableFact]
    public async Task A_jti_whose_record_expired_can_be_used_again_once()
    {
        var client = await SigningClient.CreateAsync(server);
        var jti = Guid.NewGuid().ToString("N");
        var jtiHash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(jti)));
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            db.Add(new UsedClientAssertion { ClientId = client.ClientId, JtiHash = jtiHash, ExpiresAt = DateTime.UtcNow.AddMinutes(-1) });
            await db.SaveChangesAsync();
        }

        var assertion = await client.AssertionAsync(payload: p => p["jti"] = jti);
        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, assertion));
        await ExpectInvalidClientAsync(await ClientCredentialsAsync(server, client, assertion), "already used");

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var record = await scope.ServiceProvider.GetRequiredService<ApplicationDbContext>().Set<UsedClientAssertion>()
                .SingleAsync(a => a.ClientId == client.ClientId && a.JtiHash == jtiHash);
            Assert.True(record.ExpiresAt > DateTime.UtcNow.AddMinutes(5), $"Kept until {record.ExpiresAt:O}");
        }
    }

    /// <summary>
    /// What OpenIddict 7 accepts, and so what clients must send (README): header typ client-authentication+jwt and aud the
    /// issuer (draft-ietf-oauth-rfc7523bis). An assertion OpenIddict refuses is refused before it is recorded: its jti stays unused.
    /// </summary>
    [SkippableTheory]
    [InlineData("typ JWT", HttpStatusCode.Unauthorized, "invalid_client")]
    [InlineData("no typ", HttpStatusCode.Unauthorized, "invalid_client")]
    [InlineData("aud token endpoint", HttpStatusCode.Unauthorized, "invalid_client")]
    public async Task An_assertion_not_typed_client_authentication_jwt_or_not_addressed_to_the_issuer_is_refused_and_not_recorded(
        string form, HttpStatusCode status, string error)
    {
        var client = await SigningClient.CreateAsync(server);
        var jti = Guid.NewGuid().ToString("N");
        var tokenEndpoint = await server.EndpointAsync("token_endpoint");
        var refused = await client.AssertionAsync(
            header: h =>
            {
                if (form == "typ JWT")
                {
                    h["typ"] = "JWT";
                }
                else if (form == "no typ")
                {
                    h.Remove("typ");
                }
            },
            payload: p =>
            {
                p["jti"] = jti;
                if (form == "aud token endpoint")
                {
                    p["aud"] = tokenEndpoint;
                }
            });

        var response = await ClientCredentialsAsync(server, client, refused);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == status, $"{(int)response.StatusCode}: {json}");
        Assert.Equal(error, json.GetProperty("error").GetString());

        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, await client.AssertionAsync(payload: p => p["jti"] = jti)));
    }

    /// <summary>The other forms draft-ietf-oauth-rfc7523bis allows, which OpenIddict 7 accepts too (README).</summary>
    [SkippableTheory]
    [InlineData("typ application/client-authentication+jwt")]
    [InlineData("aud an array of the issuer")]
    public async Task An_assertion_typed_with_the_media_type_or_with_the_issuer_in_an_array_gets_a_token(string form)
    {
        var client = await SigningClient.CreateAsync(server);
        var issuer = await server.EndpointAsync("issuer");

        var assertion = form.StartsWith("typ", StringComparison.Ordinal)
            ? await client.AssertionAsync(header: h => h["typ"] = "application/client-authentication+jwt")
            : await client.AssertionAsync(payload: p => p["aud"] = new[] { issuer });

        await ExpectTokenAsync(await ClientCredentialsAsync(server, client, assertion));
    }
}

/// <summary>
/// A private_key_jwt client with an RSA key and a P-256 key of its own, the assertions and request objects it signs with
/// them, and the checks of what its requests get.
/// </summary>
public sealed class SigningClient
{
    public const string AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    private readonly RSA _key = RSA.Create(2048);
    private readonly string _keyId = Guid.NewGuid().ToString("N");

    /// <summary>EC keys registered beside the RSA one, for ES256, ES384 and ES512 (<see cref="Sign"/>): its curve, key and kid.</summary>
    private readonly Dictionary<string, (string Curve, ECDsa Key, string KeyId)> _ecKeys = new()
    {
        ["ES256"] = ("P-256", ECDsa.Create(ECCurve.NamedCurves.nistP256), Guid.NewGuid().ToString("N")),
        ["ES384"] = ("P-384", ECDsa.Create(ECCurve.NamedCurves.nistP384), Guid.NewGuid().ToString("N")),
        ["ES512"] = ("P-521", ECDsa.Create(ECCurve.NamedCurves.nistP521), Guid.NewGuid().ToString("N")),
    };
    private ServerFixture _server = null!;

    public string ClientId { get; private set; } = null!;

    /// <summary>The client's public keys as a JSON Web Key Set, as it would publish them at a jwks_uri.</summary>
    public string PublicJwks { get; private set; } = null!;

    /// <summary>A client_credentials request of <paramref name="clientId"/>, authenticated by <paramref name="assertion"/>.</summary>
    public static Task<HttpResponseMessage> ClientCredentialsAsync(ServerFixture server, string clientId, string assertion) =>
        OAuth.PostTokenAsync(server, WithAssertion(clientId, assertion, new() { ["grant_type"] = "client_credentials" }));

    public static Task<HttpResponseMessage> ClientCredentialsAsync(ServerFixture server, SigningClient client, string assertion) =>
        ClientCredentialsAsync(server, client.ClientId, assertion);

    /// <summary><paramref name="form"/> with the client authentication of <paramref name="clientId"/> by <paramref name="assertion"/>.</summary>
    public static Dictionary<string, string> WithAssertion(string clientId, string assertion, Dictionary<string, string> form) => new(form)
    {
        ["client_id"] = clientId,
        ["client_assertion_type"] = AssertionType,
        ["client_assertion"] = assertion,
    };

    public static async Task ExpectTokenAsync(HttpResponseMessage response)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {json}");
        Assert.False(string.IsNullOrEmpty(json.GetProperty("access_token").GetString()));
    }

    /// <summary>A 401 invalid_client, whose description says <paramref name="description"/> when given.</summary>
    public static async Task ExpectInvalidClientAsync(HttpResponseMessage response, string? description = null)
    {
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{(int)response.StatusCode}: {json}");
        Assert.Equal("invalid_client", json.GetProperty("error").GetString());
        if (description is not null)
        {
            Assert.Contains(description, json.GetProperty("error_description").GetString());
        }
    }

    public static async Task<SigningClient> CreateAsync(ServerFixture server, Action<ClientDocument>? configure = null)
    {
        var client = new SigningClient { _server = server };
        var key = client._key.ExportParameters(false);
        var jwk = new Dictionary<string, string>
        {
            ["kty"] = "RSA", ["use"] = "sig", ["kid"] = client._keyId,
            ["n"] = Base64UrlEncoder.Encode(key.Modulus!), ["e"] = Base64UrlEncoder.Encode(key.Exponent!),
        };
        var keys = new List<Dictionary<string, string>> { jwk };
        foreach (var (curve, ecKey, keyId) in client._ecKeys.Values)
        {
            var point = ecKey.ExportParameters(false).Q;
            keys.Add(new Dictionary<string, string>
            {
                ["kty"] = "EC", ["crv"] = curve, ["use"] = "sig", ["kid"] = keyId,
                ["x"] = Base64UrlEncoder.Encode(point.X!), ["y"] = Base64UrlEncoder.Encode(point.Y!),
            });
        }

        var created = await server.CreateClientAsync(c =>
        {
            c.ClientId = Unique.Name("pkj");
            c.TokenEndpointAuthMethod = "private_key_jwt";
            c.GrantTypes = ["client_credentials"];
            c.Jwks = JsonSerializer.SerializeToElement(new { keys });
            configure?.Invoke(c);
        });
        client.ClientId = created.ClientId;
        client.PublicJwks = JsonSerializer.Serialize(new { keys });
        return client;
    }

    /// <summary>
    /// An assertion as OpenIddict 7 accepts it (typ client-authentication+jwt; iss and sub the client; aud the issuer; a
    /// new jti; exp in two minutes), signed with RS256, after <paramref name="header"/> and <paramref name="payload"/>
    /// changed what they like. Written by hand so that any member can be left out, typ included.
    /// </summary>
    public async Task<string> AssertionAsync(Action<Dictionary<string, object>>? header = null, Action<Dictionary<string, object>>? payload = null)
    {
        var now = DateTimeOffset.UtcNow;
        var headerMembers = new Dictionary<string, object> { ["alg"] = "RS256", ["kid"] = _keyId, ["typ"] = "client-authentication+jwt" };
        var claims = new Dictionary<string, object>
        {
            ["iss"] = ClientId, ["sub"] = ClientId, ["aud"] = await _server.EndpointAsync("issuer"), ["jti"] = Guid.NewGuid().ToString("N"),
            ["iat"] = now.ToUnixTimeSeconds(), ["exp"] = now.AddMinutes(2).ToUnixTimeSeconds(),
        };
        header?.Invoke(headerMembers);
        payload?.Invoke(claims);
        return Sign(headerMembers, claims);
    }

    /// <summary>
    /// A request object (RFC 9101) holding <paramref name="parameters"/>, as a client that follows the RFC makes it (typ
    /// oauth-authz-req+jwt; iss and client_id the client; aud the issuer; exp in five minutes), signed with RS256 after
    /// <paramref name="header"/> and <paramref name="payload"/> changed what they like.
    /// </summary>
    public async Task<string> RequestObjectAsync(IDictionary<string, object> parameters, Action<Dictionary<string, object>>? header = null,
        Action<Dictionary<string, object>>? payload = null)
    {
        var now = DateTimeOffset.UtcNow;
        var headerMembers = new Dictionary<string, object> { ["alg"] = "RS256", ["kid"] = _keyId, ["typ"] = "oauth-authz-req+jwt" };
        var claims = new Dictionary<string, object>(parameters)
        {
            ["iss"] = ClientId, ["client_id"] = ClientId, ["aud"] = await _server.EndpointAsync("issuer"),
            ["iat"] = now.ToUnixTimeSeconds(), ["exp"] = now.AddMinutes(5).ToUnixTimeSeconds(),
        };
        header?.Invoke(headerMembers);
        payload?.Invoke(claims);
        return Sign(headerMembers, claims);
    }

    /// <summary>
    /// A JWS of the members given, signed by the header's alg: RS or PS 256, 384 or 512 with the client's RSA key, ES256,
    /// ES384 or ES512 with its EC key of that curve (whose kid then replaces the RSA key's); "none" leaves it unsigned.
    /// </summary>
    private string Sign(Dictionary<string, object> header, Dictionary<string, object> claims)
    {
        if (_ecKeys.TryGetValue(header["alg"].ToString()!, out var ec) && header.TryGetValue("kid", out var kid) && (string)kid == _keyId)
        {
            header["kid"] = ec.KeyId;
        }

        return SignJson(JsonSerializer.Serialize(header), JsonSerializer.Serialize(claims));
    }

    /// <summary>A JWS of a header and payload given as they are (any JSON, or not JSON at all), signed as <see cref="Sign"/> does.</summary>
    public string SignJson(string headerJson, string payloadJson)
    {
        var header = JsonSerializer.Deserialize<Dictionary<string, object>>(headerJson)!;
        var signed = $"{Base64UrlEncoder.Encode(headerJson)}.{Base64UrlEncoder.Encode(payloadJson)}";
        var input = Encoding.ASCII.GetBytes(signed);
        var alg = header["alg"].ToString()!;
        static HashAlgorithmName Hash(string alg) => alg[2..] switch
        {
            "256" => HashAlgorithmName.SHA256,
            "384" => HashAlgorithmName.SHA384,
            "512" => HashAlgorithmName.SHA512,
            _ => throw new ArgumentException($"Cannot sign with {alg}."),
        };
        byte[]? signature = alg switch
        {
            "none" => null,
            _ when alg.StartsWith("RS", StringComparison.Ordinal) => _key.SignData(input, Hash(alg), RSASignaturePadding.Pkcs1),
            _ when alg.StartsWith("PS", StringComparison.Ordinal) => _key.SignData(input, Hash(alg), RSASignaturePadding.Pss),
            _ when _ecKeys.TryGetValue(alg, out var ec) => ec.Key.SignData(input, Hash(alg)), // IEEE P1363 (r || s), as JWS wants
            _ => throw new ArgumentException($"Cannot sign with {alg}."),
        };
        return signature is null ? $"{signed}." : $"{signed}.{Base64UrlEncoder.Encode(signature)}";
    }
}

public sealed class SqliteClientAssertionTests(SqliteServerFixture server)
    : ClientAssertionTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlClientAssertionTests(PostgreSqlServerFixture server)
    : ClientAssertionTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
