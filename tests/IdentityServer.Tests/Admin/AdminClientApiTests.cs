using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using IdentityServer.Data;
using IdentityServer.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.EntityFrameworkCore.Models;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// The clients of the admin API: create, read, list, replace, delete, rotate the secret; validation with RFC 7591
/// errors; secrets never echoed (except a generated one, once); optimistic concurrency with ETag and If-Match.
/// </summary>
public abstract class AdminClientApiTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_confidential_client_created_without_a_secret_gets_a_strong_generated_one_shown_only_once()
    {
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("machine");

        var created = await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId,
            client_name = "Nightly export",
            grant_types = new[] { "client_credentials" },
            scope,
        }));

        var body = await created.ExpectAsync(HttpStatusCode.Created);
        Assert.Equal($"/api/admin/clients/{clientId}", created.Headers.Location?.OriginalString);
        Assert.False(string.IsNullOrEmpty(ETagOf(created)));
        var secret = body.GetProperty("client_secret").GetString()!;
        Assert.Matches("^[A-Za-z0-9_-]{43}$", secret); // 256 bits, base64url
        Assert.Equal("client_secret_basic", body.GetProperty("token_endpoint_auth_method").GetString());

        var read = await (await admin.GetAsync(Path(ClientsUrl, clientId))).Content.ReadAsStringAsync();
        var listed = await (await admin.GetAsync($"{ClientsUrl}?search={clientId}")).Content.ReadAsStringAsync();
        Assert.DoesNotContain(secret, read);
        Assert.DoesNotContain("client_secret\"", read);
        Assert.DoesNotContain(secret, listed);
        Assert.DoesNotContain("client_secret\"", listed);

        // The secret works at once, and another secret of the same shape does not.
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, clientId, secret, scope)));
        Assert.Equal(HttpStatusCode.Unauthorized, (await ClientCredentialsAsync(server, clientId, global::IdentityServer.Clients.ClientSecrets.Generate(), scope)).StatusCode);
    }

    [SkippableFact]
    public async Task A_secret_the_admin_sends_is_stored_hashed_and_never_returned_or_audited()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("web");
        var secret = $"my-own-secret-{Guid.NewGuid():N}";

        var created = await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId,
            client_secret = secret,
            grant_types = new[] { "authorization_code", "refresh_token" },
            token_endpoint_auth_method = "client_secret_post",
            redirect_uris = new[] { "https://web.example.com/signin-oidc" },
            scope = "openid profile",
        }));
        var createdBody = await created.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);

        string hash;
        string audit;
        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ApplicationDbContext>();
            hash = (await db.Set<OpenIddictEntityFrameworkCoreApplication>().SingleAsync(a => a.ClientId == clientId)).ClientSecret!;
            audit = string.Join("\n", await db.AuditEntries.Where(e => e.TargetId == clientId).Select(e => e.Before + e.After).ToListAsync());
        }

        Assert.NotEqual(secret, hash);
        Assert.NotEmpty(audit);
        var responses = new[]
        {
            createdBody,
            await (await admin.GetAsync(Path(ClientsUrl, clientId))).Content.ReadAsStringAsync(),
            await (await admin.GetAsync($"{ClientsUrl}?search={clientId}")).Content.ReadAsStringAsync(),
            (await AuditForAsync(admin, "client", clientId)).ToString(),
            audit,
        };
        foreach (var response in responses)
        {
            Assert.DoesNotContain(secret, response);
            Assert.DoesNotContain(hash, response);
            Assert.DoesNotContain("client_secret\"", response);
        }
    }

    [SkippableFact]
    public async Task A_client_reads_back_as_the_document_it_was_created_from_with_an_etag()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("native");
        var document = new
        {
            client_id = clientId,
            client_name = "Field app",
            redirect_uris = new[] { "com.example.field:/callback", "http://127.0.0.1/callback" },
            post_logout_redirect_uris = new[] { "com.example.field:/signed-out" },
            grant_types = new[] { "authorization_code", "refresh_token" },
            token_endpoint_auth_method = "none",
            scope = "openid offline_access",
            consent_type = "implicit",
            application_type = "native",
        };
        var created = await admin.PostJsonAsync(ClientsUrl, Json(document));
        await created.ExpectAsync(HttpStatusCode.Created);

        var read = await admin.GetAsync(Path(ClientsUrl, clientId));
        var json = await read.ExpectAsync(HttpStatusCode.OK);

        Assert.Equal(ETagOf(created), ETagOf(read));
        Assert.Equal("no-store", read.Headers.CacheControl?.ToString());
        Assert.Equal(clientId, json.GetProperty("client_id").GetString());
        Assert.Equal("Field app", json.GetProperty("client_name").GetString());
        Assert.Equal(document.redirect_uris, Strings(json, "redirect_uris"));
        Assert.Equal(document.post_logout_redirect_uris, Strings(json, "post_logout_redirect_uris"));
        Assert.Equal(document.grant_types, Strings(json, "grant_types"));
        Assert.Equal("none", json.GetProperty("token_endpoint_auth_method").GetString());
        Assert.Equal("openid offline_access", json.GetProperty("scope").GetString());
        Assert.Equal("implicit", json.GetProperty("consent_type").GetString());
        Assert.Equal("native", json.GetProperty("application_type").GetString());
        Assert.False(json.TryGetProperty("audience_aliases", out _)); // written only when the client has some
        Assert.False(json.TryGetProperty("dpop_bound_access_tokens", out _)); // written only when true
    }

    /// <summary><c>dpop_bound_access_tokens</c> reads back as sent, and a replace without it turns it off.</summary>
    [SkippableFact]
    public async Task Dpop_bound_access_tokens_reads_back_and_a_replace_without_it_turns_it_off()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("dpop");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, dpop_bound_access_tokens = true })))
            .ExpectAsync(HttpStatusCode.Created);

        var read = await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectAsync(HttpStatusCode.OK);
        Assert.True(read.GetProperty("dpop_bound_access_tokens").GetBoolean(), read.ToString());

        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(new { grant_types = new[] { "client_credentials" } }))).ExpectAsync(HttpStatusCode.OK);
        var replaced = await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectAsync(HttpStatusCode.OK);
        Assert.False(replaced.TryGetProperty("dpop_bound_access_tokens", out _), replaced.ToString());
    }

    /// <summary>
    /// <c>require_pushed_authorization_requests</c> reads back as sent, a replace without it turns it off, and it needs
    /// the code flow.
    /// </summary>
    [SkippableFact]
    public async Task Require_pushed_authorization_requests_reads_back_and_needs_the_code_flow()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("par");
        var document = new { client_id = clientId, grant_types = new[] { "authorization_code" }, redirect_uris = new[] { "https://app.test/callback" },
            require_pushed_authorization_requests = true };
        await (await admin.PostJsonAsync(ClientsUrl, Json(document))).ExpectAsync(HttpStatusCode.Created);

        var read = await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectAsync(HttpStatusCode.OK);
        Assert.True(read.GetProperty("require_pushed_authorization_requests").GetBoolean(), read.ToString());
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(document with { require_pushed_authorization_requests = false }))).ExpectAsync(HttpStatusCode.OK);
        Assert.False((await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectAsync(HttpStatusCode.OK))
            .TryGetProperty("require_pushed_authorization_requests", out _));

        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = Unique.Name("par"), grant_types = new[] { "client_credentials" },
            require_pushed_authorization_requests = true }))).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "require_pushed_authorization_requests");
    }

    /// <summary>An API's audience aliases read back as sent, and a replace without them removes them.</summary>
    [SkippableFact]
    public async Task An_apis_audience_aliases_read_back_and_a_replace_without_them_removes_them()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("api");
        string[] aliases = ["https://orders.example.com", "https://orders.example.com/v2"];
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, audience_aliases = aliases })))
            .ExpectAsync(HttpStatusCode.Created);

        var read = await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(aliases, Strings(read, "audience_aliases"));

        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(new { grant_types = new[] { "client_credentials" } }))).ExpectAsync(HttpStatusCode.OK);
        var replaced = await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectAsync(HttpStatusCode.OK);
        Assert.False(replaced.TryGetProperty("audience_aliases", out _), replaced.ToString());
    }

    /// <summary>An API client may not stand for the issuer: tokens for no API name it, and the client could read and revoke them all.</summary>
    [SkippableFact]
    public async Task An_audience_alias_that_is_the_issuer_is_refused()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("api");

        var response = await admin.PostJsonAsync(ClientsUrl,
            Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, audience_aliases = new[] { await server.EndpointAsync("issuer") } }));

        await response.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "audience_aliases");
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    [SkippableFact]
    public async Task A_private_key_jwt_client_keeps_its_public_keys_and_never_a_secret()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("signed");
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var key = rsa.ExportParameters(includePrivateParameters: false);
        var jwk = new { kty = "RSA", use = "sig", kid = "k1", n = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(key.Modulus), e = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(key.Exponent) };

        var created = await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId,
            grant_types = new[] { "client_credentials" },
            token_endpoint_auth_method = "private_key_jwt",
            jwks = new { keys = new[] { jwk } },
        }));

        var body = await created.ExpectAsync(HttpStatusCode.Created);
        Assert.False(body.TryGetProperty("client_secret", out _));
        var read = await admin.GetJsonAsync(Path(ClientsUrl, clientId));
        Assert.Equal("private_key_jwt", read.GetProperty("token_endpoint_auth_method").GetString());
        var stored = read.GetProperty("jwks").GetProperty("keys")[0];
        Assert.Equal(jwk.n, stored.GetProperty("n").GetString());
        Assert.Equal(jwk.kid, stored.GetProperty("kid").GetString());
        Assert.False(stored.TryGetProperty("d", out _));
        await (await admin.PostAsync(Path(ClientsUrl, clientId) + "/secret", null)).ExpectErrorAsync(HttpStatusCode.Conflict, "invalid_client_metadata");
    }

    /// <summary>Keys that could never verify a client assertion, each with the field its error names.</summary>
    public static TheoryData<string, string, string> UnusableKeys()
    {
        var rsa = RsaJwk(2048);
        var ec = EcJwk(ECCurve.NamedCurves.nistP256, "P-256");
        var offCurve = new Dictionary<string, object>(ec) { ["y"] = ec["x"] };
        return new()
        {
            { "RSA modulus too short to be base64url of a key", KeySet(With(rsa, "n", "abc")), "jwks.keys[0]" },
            { "RSA modulus not base64url", KeySet(With(rsa, "n", "ab+/" + (string)rsa["n"])), "jwks.keys[0]" },
            { "RSA modulus padded", KeySet(With(rsa, "n", (string)rsa["n"] + "==")), "jwks.keys[0]" },
            { "RSA-1024", KeySet(RsaJwk(1024)), "jwks.keys[0]" },
            { "RSA without e", KeySet(With(rsa, "e", null)), "jwks.keys[0]" },
            { "RSA with an even e", KeySet(With(rsa, "e", "AQAA")), "jwks.keys[0]" },
            { "RSA with e = 1", KeySet(With(rsa, "e", "AQ")), "jwks.keys[0]" },
            { "RSA with d", KeySet(With(rsa, "d", "AQAB")), "jwks.keys[0]" },
            { "RSA with p and q", KeySet(With(With(rsa, "p", "AQAB"), "q", "AQAB")), "jwks.keys[0]" },
            { "RSA for encryption", KeySet(With(rsa, "use", "enc")), "jwks.keys[0]" },
            { "RSA whose key_ops do not verify", KeySet(With(rsa, "key_ops", new[] { "encrypt" })), "jwks.keys[0]" },
            { "RSA with an EC algorithm", KeySet(With(rsa, "alg", "ES256")), "jwks.keys[0]" },
            { "EC on an unsupported curve", KeySet(With(ec, "crv", "P-192")), "jwks.keys[0]" },
            { "EC without crv", KeySet(With(ec, "crv", null)), "jwks.keys[0]" },
            { "EC point off the curve", KeySet(offCurve), "jwks.keys[0]" },
            { "EC P-256 point named P-384", KeySet(With(ec, "crv", "P-384")), "jwks.keys[0]" },
            { "EC without y", KeySet(With(ec, "y", null)), "jwks.keys[0]" },
            { "EC with d", KeySet(With(ec, "d", ec["x"])), "jwks.keys[0]" },
            { "EC with another curve's algorithm", KeySet(With(ec, "alg", "ES384")), "jwks.keys[0]" },
            { "symmetric key", KeySet(new Dictionary<string, object> { ["kty"] = "oct", ["k"] = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" }), "jwks.keys[0]" },
            { "oct without k", KeySet(new Dictionary<string, object> { ["kty"] = "oct" }), "jwks.keys[0]" },
            { "OKP", KeySet(new Dictionary<string, object> { ["kty"] = "OKP", ["crv"] = "Ed25519", ["x"] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }), "jwks.keys[0]" },
            { "no kty", KeySet(With(rsa, "kty", null)), "jwks.keys[0]" },
            { "a key that is not an object", """{"keys":["RSA"]}""", "jwks.keys[0]" },
            { "a good key, then a bad one", KeySet(rsa, With(ec, "use", "enc")), "jwks.keys[1]" },
            { "no keys", """{"keys":[]}""", "jwks" },
        };
    }

    [SkippableTheory]
    [MemberData(nameof(UnusableKeys))]
    public async Task A_client_key_that_cannot_verify_its_assertions_is_refused_naming_the_key(string unusable, string jwks, string field)
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("keys");

        var response = await admin.PostJsonAsync(ClientsUrl,
            $$"""{"client_id":"{{clientId}}","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{{jwks}}}""");

        var error = await response.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", field);
        Assert.True(error.GetProperty("errors").GetArrayLength() == 1, $"{unusable}: {error}");
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    [SkippableTheory]
    [InlineData("RSA")]
    [InlineData("EC")]
    public async Task An_rsa_2048_or_ec_p256_public_key_is_accepted_and_authenticates_the_client(string kty)
    {
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("signed");
        using var rsa = RSA.Create(2048);
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (key, alg, jwk) = kty == "RSA"
            ? ((SecurityKey)new RsaSecurityKey(rsa) { KeyId = "r1" }, SecurityAlgorithms.RsaSha256, PublicJwk(rsa.ExportParameters(false), "r1"))
            : (new ECDsaSecurityKey(ecdsa) { KeyId = "e1" }, SecurityAlgorithms.EcdsaSha256, PublicJwk(ecdsa.ExportParameters(false), "e1"));

        await (await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId,
            grant_types = new[] { "client_credentials" },
            token_endpoint_auth_method = "private_key_jwt",
            scope,
            jwks = new { keys = new[] { jwk } },
        }))).ExpectAsync(HttpStatusCode.Created);

        var issuer = await server.EndpointAsync("issuer");
        var assertion = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            // Typed, and addressed to the issuer, as draft-ietf-oauth-rfc7523bis asks (OpenIddict 7 accepts this form).
            TokenType = "client-authentication+jwt",
            Issuer = clientId,
            Audience = issuer,
            Claims = new Dictionary<string, object> { ["sub"] = clientId, ["jti"] = Guid.NewGuid().ToString("N") },
            Expires = DateTime.UtcNow.AddMinutes(2),
            SigningCredentials = new SigningCredentials(key, alg),
        });
        var response = await OAuth.PostTokenAsync(server, new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["client_id"] = clientId,
            ["scope"] = scope,
            ["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ["client_assertion"] = assertion,
        });
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {json}");
        Assert.False(string.IsNullOrEmpty(json.GetProperty("access_token").GetString()));
    }

    private static string B64(byte[] bytes) => Base64UrlEncoder.Encode(bytes);

    private static Dictionary<string, object> RsaJwk(int bits)
    {
        using var rsa = RSA.Create(bits);
        return PublicJwk(rsa.ExportParameters(false), null);
    }

    private static Dictionary<string, object> EcJwk(ECCurve curve, string crv)
    {
        using var ecdsa = ECDsa.Create(curve);
        return PublicJwk(ecdsa.ExportParameters(false), null);
    }

    private static Dictionary<string, object> PublicJwk(RSAParameters key, string? kid) =>
        WithKid(new() { ["kty"] = "RSA", ["n"] = B64(key.Modulus!), ["e"] = B64(key.Exponent!) }, kid);

    private static Dictionary<string, object> PublicJwk(ECParameters key, string? kid) =>
        WithKid(new() { ["kty"] = "EC", ["crv"] = "P-256", ["x"] = B64(key.Q.X!), ["y"] = B64(key.Q.Y!) }, kid);

    private static Dictionary<string, object> WithKid(Dictionary<string, object> jwk, string? kid) =>
        kid is null ? jwk : With(jwk, "kid", kid);

    /// <summary>A copy of the key with one member set (or removed, for null).</summary>
    private static Dictionary<string, object> With(Dictionary<string, object> jwk, string member, object? value)
    {
        var copy = new Dictionary<string, object>(jwk);
        if (value is null)
        {
            copy.Remove(member);
        }
        else
        {
            copy[member] = value;
        }

        return copy;
    }

    private static string KeySet(params Dictionary<string, object>[] keys) => Json(new { keys });

    [SkippableFact]
    public async Task An_unknown_client_is_a_404_with_an_error_body()
    {
        var admin = await AdminAsync(server);
        var missing = Unique.Name("missing");

        await (await admin.GetAsync(Path(ClientsUrl, missing))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.PutJsonAsync(Path(ClientsUrl, missing), Json(new { grant_types = new[] { "client_credentials" } })))
            .ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.DeleteAsync(Path(ClientsUrl, missing), null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        await (await admin.PostAsync(Path(ClientsUrl, missing) + "/secret", null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
    }

    [SkippableFact]
    public async Task Clients_are_listed_by_client_id_or_name_a_page_at_a_time()
    {
        var admin = await AdminAsync(server);
        var tag = Unique.Name("batch");
        foreach (var i in new[] { 1, 2, 3 })
        {
            await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = $"{tag}-{i}", grant_types = new[] { "client_credentials" } })))
                .ExpectAsync(HttpStatusCode.Created);
        }

        var named = Unique.Name("named");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = named, client_name = $"Payroll {tag.ToUpperInvariant()}", grant_types = new[] { "client_credentials" } })))
            .ExpectAsync(HttpStatusCode.Created);

        var first = await admin.GetJsonAsync($"{ClientsUrl}?search={tag}&page_size=2");
        var second = await admin.GetJsonAsync($"{ClientsUrl}?search={tag}&page_size=2&page=2");

        Assert.Equal(4, first.GetProperty("total").GetInt32());
        Assert.Equal(2, first.GetProperty("page_size").GetInt32());
        var ids = first.GetProperty("items").EnumerateArray().Concat(second.GetProperty("items").EnumerateArray())
            .Select(c => c.GetProperty("client_id").GetString()).ToList();
        Assert.Equal([$"{tag}-1", $"{tag}-2", $"{tag}-3", named], ids);
        var byName = await admin.GetJsonAsync($"{ClientsUrl}?search=payroll%20{tag}");
        Assert.Equal([named], byName.GetProperty("items").EnumerateArray().Select(c => c.GetProperty("client_id").GetString()));
    }

    [SkippableFact]
    public async Task A_client_page_or_page_size_that_is_not_a_whole_number_is_refused_naming_the_parameter() =>
        await AssertPagingThatIsNotAWholeNumberIsRefusedNamingTheParameterAsync(await AdminAsync(server), ClientsUrl);

    [SkippableFact]
    public async Task A_client_page_past_the_end_is_empty_however_large_its_number()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("far");
        await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" } })))
            .ExpectAsync(HttpStatusCode.Created);

        await AssertPagesPastTheEndAreEmptyAsync(admin, ClientsUrl, clientId);
    }

    /// <summary>What only OpenIddict refuses when it stores the client (an iss parameter in a redirect URI) is a 400 too, not a 500.</summary>
    [SkippableFact]
    public async Task A_client_OpenIddict_refuses_to_store_is_refused_as_invalid_metadata()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("iss");

        var response = await admin.PostJsonAsync(ClientsUrl, Json(new
        {
            client_id = clientId,
            token_endpoint_auth_method = "none",
            grant_types = new[] { "authorization_code" },
            redirect_uris = new[] { "https://app.example.com/cb?iss=a" },
        }));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_client_metadata", (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    [SkippableTheory]
    [InlineData("""{"redirect_uris":["http://app.example.com/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["https://app.example.com/cb#x"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["/callback"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["com.example.app:/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["https://app.example.com/cb?x=\u0000"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["https://app.example.com/a b"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["https://user:pw@app.example.com/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["https://@app.example.com/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris[0]")]
    [InlineData("""{"redirect_uris":["https://app.example.com/cb"],"post_logout_redirect_uris":["https://app.example.com@evil.example/out"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "post_logout_redirect_uris[0]")]
    [InlineData("""{"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}""", "invalid_redirect_uri", "redirect_uris")]
    [InlineData("""{"grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}""", "invalid_client_metadata", "grant_types")]
    [InlineData("""{"grant_types":["urn:ietf:params:oauth:grant-type:token-exchange"],"token_endpoint_auth_method":"none"}""", "invalid_client_metadata", "grant_types")]
    [InlineData("""{"redirect_uris":["https://app.example.com/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none","require_pkce":false}""", "invalid_client_metadata", "require_pkce")]
    [InlineData("""{"grant_types":["client_credentials"],"require_pkce":false}""", "invalid_client_metadata", "require_pkce")]
    [InlineData("""{"redirect_uris":["https://app.example.com/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none","audience_aliases":["https://api.example.com"]}""", "invalid_client_metadata", "audience_aliases")]
    [InlineData("""{"grant_types":["client_credentials"],"audience_aliases":["https://api.example.com/a b"]}""", "invalid_client_metadata", "audience_aliases")]
    [InlineData("""{"grant_types":["client_credentials"],"audience_aliases":[""]}""", "invalid_client_metadata", "audience_aliases")]
    [InlineData("""{"grant_types":["client_credentials"],"audience_aliases":["orders-api"]}""", "invalid_client_metadata", "audience_aliases")]
    [InlineData("""{"grant_types":["client_credentials"],"audience_aliases":["urn:example:orders"]}""", "invalid_client_metadata", "audience_aliases")]
    [InlineData("""{"grant_types":["client_credentials"],"audience_aliases":["/orders/v1"]}""", "invalid_client_metadata", "audience_aliases")]
    [InlineData("""{"grant_types":["password"]}""", "invalid_client_metadata", "grant_types")]
    [InlineData("""{"grant_types":["refresh_token"]}""", "invalid_client_metadata", "grant_types")]
    [InlineData("""{"grant_types":[]}""", "invalid_client_metadata", "grant_types")]
    [InlineData("""{"grant_types":["client_credentials"],"scope":"no-such-scope"}""", "invalid_client_metadata", "scope")]
    [InlineData("""{"grant_types":["client_credentials"],"token_endpoint_auth_method":"tls_client_auth"}""", "invalid_client_metadata", "token_endpoint_auth_method")]
    [InlineData("""{"grant_types":["client_credentials"],"client_secret":"short"}""", "invalid_client_metadata", "client_secret")]
    [InlineData("""{"grant_types":["client_credentials"],"consent_type":"sometimes"}""", "invalid_client_metadata", "consent_type")]
    [InlineData("""{"grant_types":["client_credentials"],"application_type":"desktop"}""", "invalid_client_metadata", "application_type")]
    [InlineData("""{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt"}""", "invalid_client_metadata", "jwks")]
    [InlineData("""{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}}""", "invalid_client_metadata", "jwks.keys[0]")]
    [InlineData("""{"grant_types":["client_credentials"],"jwks_uri":"https://keys.example.com"}""", "invalid_client_metadata", "jwks_uri")]
    [InlineData("""{"grant_types":["client_credentials"],"colour":"blue"}""", "invalid_client_metadata", "colour")]
    [InlineData("""{"grant_types":"client_credentials"}""", "invalid_client_metadata", "grant_types")]
    [InlineData("""{"grant_types":["client_credentials"],"client_id":"a/b"}""", "invalid_client_metadata", "client_id")]
    [InlineData("""{"grant_types":["client_credentials"],"client_id":"a:b"}""", "invalid_client_metadata", "client_id")]
    [InlineData("""{"grant_types":["client_credentials"],"client_id":"a<b>"}""", "invalid_client_metadata", "client_id")]
    [InlineData("""{"grant_types":["client_credentials"],"client_id":"a\"b"}""", "invalid_client_metadata", "client_id")]
    [InlineData("""{"grant_types":["client_credentials"],"client_id":"a\u202Eb"}""", "invalid_client_metadata", "client_id")]
    [InlineData("""{"grant_types":["client_credentials"],"client_id":"caf\u00e9"}""", "invalid_client_metadata", "client_id")]
    [InlineData("""{"grant_types":["client_credentials"],"client_name":"Bank \u202Emoc.live"}""", "invalid_client_metadata", "client_name")]
    [InlineData("""{"grant_types":["client_credentials"],"client_name":"Bank\u2066 x"}""", "invalid_client_metadata", "client_name")]
    [InlineData("""{"grant_types":["client_credentials"],"client_name":"Bank\u200F"}""", "invalid_client_metadata", "client_name")]
    [InlineData("""{"grant_types":["client_credentials"],"client_name":"Bank\u0007"}""", "invalid_client_metadata", "client_name")]
    [InlineData("""{"grant_types":["client_credentials"],"client_name":"Bank\u0085"}""", "invalid_client_metadata", "client_name")]
    [InlineData("""{"grant_types":["client_credentials"],"client_name":"Bank\nInc"}""", "invalid_client_metadata", "client_name")]
    public async Task An_invalid_client_document_is_refused_with_the_rfc_7591_error_naming_the_field(string json, string error, string field)
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("bad");
        var document = json.Contains("\"client_id\"") ? json : json.Insert(1, $"\"client_id\":\"{clientId}\",");

        var response = await admin.PostJsonAsync(ClientsUrl, document);

        await response.ExpectErrorAsync(HttpStatusCode.BadRequest, error, field);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(Path(ClientsUrl, clientId))).StatusCode);
    }

    /// <summary>A member named twice is refused, not read as its last value (the checks and the admin may have meant the other).</summary>
    [SkippableFact]
    public async Task A_body_naming_a_member_twice_is_refused()
    {
        var admin = await AdminAsync(server);
        var (first, second) = (Unique.Name("first"), Unique.Name("second"));

        var client = await admin.PostJsonAsync(ClientsUrl,
            $$"""{"client_id":"{{first}}","client_id":"{{second}}","grant_types":["client_credentials"]}""");
        var scope = await admin.PostJsonAsync(ScopesUrl, $$"""{"name":"{{first}}","name":"{{second}}"}""");

        var refused = await client.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "client_id");
        Assert.Contains("more than once", refused.GetProperty("error_description").GetString());
        await scope.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", "name");
        foreach (var url in new[] { Path(ClientsUrl, first), Path(ClientsUrl, second), Path(ScopesUrl, first), Path(ScopesUrl, second) })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await admin.GetAsync(url)).StatusCode);
        }
    }

    [SkippableFact]
    public async Task A_body_that_is_not_json_is_refused_without_a_server_error()
    {
        var admin = await AdminAsync(server);

        var form = await admin.PostAsync(ClientsUrl, new FormUrlEncodedContent(new Dictionary<string, string> { ["client_id"] = "x" }));
        var broken = await admin.PostJsonAsync(ClientsUrl, "{\"client_id\": ");
        var array = await admin.PostJsonAsync(ClientsUrl, "[]");

        Assert.True(form.StatusCode == HttpStatusCode.UnsupportedMediaType, $"{form.StatusCode} {form.Headers.Location} {form.Headers}");
        await form.ExpectErrorAsync(HttpStatusCode.UnsupportedMediaType, "invalid_request");
        await broken.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata");
        await array.ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata");
    }

    [SkippableFact]
    public async Task A_client_id_already_registered_is_a_conflict()
    {
        var admin = await AdminAsync(server);
        var document = Json(new { client_id = Unique.Name("twice"), grant_types = new[] { "client_credentials" } });
        await (await admin.PostJsonAsync(ClientsUrl, document)).ExpectAsync(HttpStatusCode.Created);

        await (await admin.PostJsonAsync(ClientsUrl, document)).ExpectErrorAsync(HttpStatusCode.Conflict, "invalid_client_metadata");
    }

    [SkippableFact]
    public async Task A_replace_with_the_current_etag_applies_and_a_stale_one_is_refused_without_losing_the_first_change()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("spa");
        var created = await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://one.example.com/cb")));
        await created.ExpectAsync(HttpStatusCode.Created);
        var original = ETagOf(created);

        var first = await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://two.example.com/cb")), ifMatch: original);
        var firstBody = await first.ExpectAsync(HttpStatusCode.OK);
        Assert.NotEqual(original, ETagOf(first));
        Assert.Equal(["https://two.example.com/cb"], Strings(firstBody, "redirect_uris"));

        // A second admin who read the client before the first change tries to overwrite it.
        var stale = await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://three.example.com/cb")), ifMatch: original);
        await stale.ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        Assert.Equal(ETagOf(first), ETagOf(stale));
        var staleDelete = await admin.DeleteAsync(Path(ClientsUrl, clientId), original);
        await staleDelete.ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");

        var now = await admin.GetAsync(Path(ClientsUrl, clientId));
        Assert.Equal(["https://two.example.com/cb"], Strings(await now.ExpectAsync(HttpStatusCode.OK), "redirect_uris"));
        Assert.Equal(ETagOf(first), ETagOf(now));
    }

    /// <summary>If-Match compares strongly (RFC 9110 section 13.1.1): the current tag marked weak matches nothing.</summary>
    [SkippableFact]
    public async Task A_weak_etag_in_if_match_never_matches()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("spa");
        var created = await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://one.example.com/cb")));
        await created.ExpectAsync(HttpStatusCode.Created);
        var weak = "W/" + ETagOf(created);

        var replace = await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://two.example.com/cb")), ifMatch: weak);
        await replace.ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        var listed = await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://two.example.com/cb")), ifMatch: $"\"other\", {weak}");
        await listed.ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        await (await admin.DeleteAsync(Path(ClientsUrl, clientId), weak)).ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");

        var now = await admin.GetAsync(Path(ClientsUrl, clientId));
        Assert.Equal(["https://one.example.com/cb"], Strings(await now.ExpectAsync(HttpStatusCode.OK), "redirect_uris"));
        Assert.Equal(ETagOf(created), ETagOf(now));
        await (await admin.DeleteAsync(Path(ClientsUrl, clientId), ETagOf(created))).ExpectAsync(HttpStatusCode.NoContent);
    }

    /// <summary>
    /// OpenIddict looks a request's client up several times, by client_id and by id, and answers a later miss with a
    /// 500 (seen on PostgreSQL: a refresh racing the deletion of its client): a client deleted meanwhile must not vanish
    /// halfway through a request. The shared cache is warm first, as under load, so the request's client is a copy
    /// OpenIddict's own per-request cache never saw.
    /// </summary>
    [SkippableFact]
    public async Task A_request_that_found_its_client_keeps_it_when_another_request_deletes_it()
    {
        var admin = await AdminAsync(server);
        var client = await server.CreateConfidentialClientAsync();
        await using (var earlier = server.Factory.Services.CreateAsyncScope())
        {
            Assert.NotNull(await earlier.ServiceProvider.GetRequiredService<OpenIddict.Abstractions.IOpenIddictApplicationManager>().FindByClientIdAsync(client.ClientId));
        }

        await using var request = server.Factory.Services.CreateAsyncScope();
        var applications = request.ServiceProvider.GetRequiredService<OpenIddict.Abstractions.IOpenIddictApplicationManager>();
        var found = await applications.FindByClientIdAsync(client.ClientId);
        Assert.NotNull(found);

        await (await admin.DeleteAsync(Path(ClientsUrl, client.ClientId))).ExpectAsync(HttpStatusCode.NoContent);

        Assert.Same(found, await applications.FindByClientIdAsync(client.ClientId));
        Assert.Same(found, await applications.FindByIdAsync((await applications.GetIdAsync(found))!));
        await using var next = server.Factory.Services.CreateAsyncScope();
        Assert.Null(await next.ServiceProvider.GetRequiredService<OpenIddict.Abstractions.IOpenIddictApplicationManager>().FindByClientIdAsync(client.ClientId));
    }

    /// <summary>
    /// What a request read before a client was deleted stays that request's: looked up again there under another key
    /// (by id, as the token endpoint does), it must not go back into the cache the other requests read.
    /// </summary>
    [SkippableFact]
    public async Task A_client_a_request_read_before_its_deletion_is_not_cached_again_for_other_requests()
    {
        var admin = await AdminAsync(server);
        var client = await server.CreateConfidentialClientAsync();
        await using var request = server.Factory.Services.CreateAsyncScope();
        var applications = request.ServiceProvider.GetRequiredService<OpenIddict.Abstractions.IOpenIddictApplicationManager>();
        var id = await applications.GetIdAsync((await applications.FindByClientIdAsync(client.ClientId))!);

        await (await admin.DeleteAsync(Path(ClientsUrl, client.ClientId))).ExpectAsync(HttpStatusCode.NoContent);
        await applications.FindByIdAsync(id!);

        await using var next = server.Factory.Services.CreateAsyncScope();
        Assert.Null(await next.ServiceProvider.GetRequiredService<OpenIddict.Abstractions.IOpenIddictApplicationManager>().FindByIdAsync(id!));
    }

    [SkippableFact]
    public async Task A_replace_cannot_rename_the_client_and_is_validated_like_a_creation()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("spa");
        await (await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://one.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);

        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(Unique.Name("other"), "https://one.example.com/cb"))))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "client_id");
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "http://plain.example.com/cb"))))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_redirect_uri", "redirect_uris[0]");
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), """{"grant_types":["authorization_code"],"redirect_uri":"https://x.example.com"}"""))
            .ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_client_metadata", "redirect_uri");
    }

    [SkippableFact]
    public async Task A_replace_without_a_secret_keeps_the_secret_and_a_client_made_confidential_gets_one_once()
    {
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("machine");
        var secret = (await (await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, scope })))
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("client_secret").GetString()!;

        var renamed = await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(new { client_name = "Renamed", grant_types = new[] { "client_credentials" }, scope }));
        Assert.False((await renamed.ExpectAsync(HttpStatusCode.OK)).TryGetProperty("client_secret", out _));
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, clientId, secret, scope)));

        var publicId = Unique.Name("public");
        await (await admin.PostJsonAsync(ClientsUrl, Json(Spa(publicId, "https://spa.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);
        var confidential = await admin.PutJsonAsync(Path(ClientsUrl, publicId), Json(new
        {
            grant_types = new[] { "authorization_code", "client_credentials" },
            redirect_uris = new[] { "https://spa.example.com/cb" },
            token_endpoint_auth_method = "client_secret_basic",
            scope,
        }));
        var generated = (await confidential.ExpectAsync(HttpStatusCode.OK)).GetProperty("client_secret").GetString()!;
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, publicId, generated, scope)));
        Assert.DoesNotContain(generated, await (await admin.GetAsync(Path(ClientsUrl, publicId))).Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task Rotating_the_secret_returns_a_new_one_once_and_the_old_one_stops_working()
    {
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("machine");
        var created = await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, scope }));
        var old = (await created.ExpectAsync(HttpStatusCode.Created)).GetProperty("client_secret").GetString()!;

        await (await admin.SendJsonAsync(HttpMethod.Post, Path(ClientsUrl, clientId) + "/secret", null, ifMatch: "\"stale\""))
            .ExpectErrorAsync(HttpStatusCode.PreconditionFailed, "precondition_failed");
        var rotated = await admin.SendJsonAsync(HttpMethod.Post, Path(ClientsUrl, clientId) + "/secret", null, ifMatch: ETagOf(created));
        var body = await rotated.ExpectAsync(HttpStatusCode.OK);
        var fresh = body.GetProperty("client_secret").GetString()!;

        Assert.Equal(clientId, body.GetProperty("client_id").GetString());
        Assert.Matches("^[A-Za-z0-9_-]{43}$", fresh);
        Assert.NotEqual(old, fresh);
        Assert.Equal(HttpStatusCode.Unauthorized, (await ClientCredentialsAsync(server, clientId, old, scope)).StatusCode);
        Assert.False(string.IsNullOrEmpty(await TokenAsync(server, clientId, fresh, scope)));
        Assert.DoesNotContain(fresh, await (await admin.GetAsync(Path(ClientsUrl, clientId))).Content.ReadAsStringAsync());
        Assert.DoesNotContain(fresh, (await AuditForAsync(admin, "client", clientId)).ToString());
    }

    [SkippableFact]
    public async Task A_public_client_has_no_secret_to_rotate()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("spa");
        await (await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://spa.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);

        await (await admin.PostAsync(Path(ClientsUrl, clientId) + "/secret", null))
            .ExpectErrorAsync(HttpStatusCode.Conflict, "invalid_client_metadata");
    }

    [SkippableFact]
    public async Task A_deleted_client_is_gone_with_its_secret()
    {
        var admin = await AdminAsync(server);
        var scope = await server.CreateScopeAsync(TestApi.NewAudience());
        var clientId = Unique.Name("machine");
        var created = await admin.PostJsonAsync(ClientsUrl, Json(new { client_id = clientId, grant_types = new[] { "client_credentials" }, scope }));
        var secret = (await created.ExpectAsync(HttpStatusCode.Created)).GetProperty("client_secret").GetString()!;

        var deleted = await admin.DeleteAsync(Path(ClientsUrl, clientId), ETagOf(created));

        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        await (await admin.GetAsync(Path(ClientsUrl, clientId))).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(HttpStatusCode.Unauthorized, (await ClientCredentialsAsync(server, clientId, secret, scope)).StatusCode);
        await (await admin.DeleteAsync(Path(ClientsUrl, clientId), null)).ExpectErrorAsync(HttpStatusCode.NotFound, "not_found");
    }

    [SkippableFact]
    public async Task Every_client_change_is_audited_with_who_what_when_and_before_and_after()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("audited");
        var started = DateTimeOffset.UtcNow.AddSeconds(-5);
        await (await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://one.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://two.example.com/cb")))).ExpectAsync(HttpStatusCode.OK);
        await (await admin.DeleteAsync(Path(ClientsUrl, clientId), null)).ExpectAsync(HttpStatusCode.NoContent);

        var entries = (await AuditForAsync(admin, "client", clientId)).EnumerateArray().ToList();

        Assert.Equal(["client.deleted", "client.updated", "client.created"], entries.Select(e => e.GetProperty("action").GetString()));
        var adminClientId = entries[0].GetProperty("actor_id").GetString();
        Assert.All(entries, e =>
        {
            Assert.Equal("client", e.GetProperty("actor_type").GetString());
            Assert.Equal(adminClientId, e.GetProperty("actor_id").GetString());
            Assert.InRange(e.GetProperty("occurred_at").GetDateTimeOffset(), started, DateTimeOffset.UtcNow.AddSeconds(5));
            Assert.False(string.IsNullOrEmpty(e.GetProperty("request_id").GetString()));
        });
        var (deleted, updated, created) = (entries[0], entries[1], entries[2]);
        Assert.False(created.TryGetProperty("before", out _));
        Assert.Equal(["https://one.example.com/cb"], Strings(created.GetProperty("after"), "redirect_uris"));
        Assert.Equal(["https://one.example.com/cb"], Strings(updated.GetProperty("before"), "redirect_uris"));
        Assert.Equal(["https://two.example.com/cb"], Strings(updated.GetProperty("after"), "redirect_uris"));
        Assert.Equal(clientId, deleted.GetProperty("before").GetProperty("client_id").GetString());
        Assert.False(deleted.TryGetProperty("after", out _));
    }

    [SkippableFact]
    public async Task The_audit_log_pages_back_from_the_newest_entries()
    {
        var admin = await AdminAsync(server);
        var clientId = Unique.Name("paged");
        await (await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://one.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://two.example.com/cb")))).ExpectAsync(HttpStatusCode.OK);
        await (await admin.PutJsonAsync(Path(ClientsUrl, clientId), Json(Spa(clientId, "https://three.example.com/cb")))).ExpectAsync(HttpStatusCode.OK);

        var first = await admin.GetJsonAsync($"{AuditUrl}?target_type=client&target_id={clientId}&limit=2");
        var before = first.GetProperty("next_before").GetInt64();
        var second = await admin.GetJsonAsync($"{AuditUrl}?target_type=client&target_id={clientId}&limit=2&before={before}");

        Assert.Equal(2, first.GetProperty("items").GetArrayLength());
        Assert.Equal(["client.created"], second.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()));
        Assert.False(second.TryGetProperty("next_before", out _));
        var ids = first.GetProperty("items").EnumerateArray().Concat(second.GetProperty("items").EnumerateArray()).Select(e => e.GetProperty("id").GetInt64()).ToList();
        Assert.Equal(ids.OrderDescending(), ids);
        // A limit beyond int's range is the largest limit, as a page size is, not a query that cannot be parsed.
        Assert.Equal(3, (await admin.GetJsonAsync($"{AuditUrl}?target_type=client&target_id={clientId}&limit=99999999999")).GetProperty("items").GetArrayLength());
    }

    [SkippableFact]
    public async Task An_audit_limit_or_before_that_is_not_a_whole_number_is_refused_naming_the_parameter()
    {
        var admin = await AdminAsync(server);

        foreach (var (query, parameter) in new[] { ("limit=abc", "limit"), ("limit=", "limit"), ("limit=1&limit=2", "limit"),
                     ("before=abc", "before"), ("before=1e3", "before"), ("before=5&before=6", "before") })
        {
            await (await admin.GetAsync($"{AuditUrl}?{query}")).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", parameter);
        }

        // A cursor beyond long's range is the largest, as a page number beyond int's is: every entry is before it.
        var clientId = Unique.Name("audited");
        await (await admin.PostJsonAsync(ClientsUrl, Json(Spa(clientId, "https://one.example.com/cb")))).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(1, (await admin.GetJsonAsync($"{AuditUrl}?target_type=client&target_id={clientId}&before=99999999999999999999999"))
            .GetProperty("items").GetArrayLength());
    }

    /// <summary>A query parameter given twice binds as its values joined by commas (a search for "a,b"): it is refused, as a field given twice in a body is.</summary>
    [SkippableFact]
    public async Task A_query_parameter_given_twice_is_refused_naming_it()
    {
        var admin = await AdminAsync(server);
        var userName = Unique.Name("twice");
        var user = await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = userName }))).ExpectAsync(HttpStatusCode.Created);
        var logins = $"{Path(UsersUrl, user.GetProperty("id").GetString()!)}/logins";

        foreach (var (method, url, parameter) in new[]
                 {
                     (HttpMethod.Get, $"{ClientsUrl}?search=demo&search=admin", "search"), (HttpMethod.Get, $"{ScopesUrl}?search=a&SEARCH=b", "search"),
                     (HttpMethod.Get, $"{UsersUrl}?search={userName}&search=x", "search"), (HttpMethod.Get, $"{AuditUrl}?target_type=client&target_type=user", "target_type"),
                     (HttpMethod.Get, $"{AuditUrl}?target_id=a&target_id=b", "target_id"),
                     (HttpMethod.Delete, $"{logins}?provider=x&provider=y&account_id=z", "provider"), (HttpMethod.Delete, $"{logins}?provider=x&account_id=z&account_id=w", "account_id"),
                 })
        {
            await (await admin.SendJsonAsync(method, url, null)).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", parameter);
        }

        // Given once, each is as before; and a route value is not a query parameter, nor is one the operation does not read.
        await admin.GetJsonAsync($"{UsersUrl}?search={userName}");
        await admin.GetJsonAsync($"{Path(UsersUrl, user.GetProperty("id").GetString()!)}?id=a&id=b&unknown=1&unknown=2");
    }

    /// <summary>PostgreSQL refuses a NUL in a text parameter: the answer is the same 400 naming the parameter on every database.</summary>
    [SkippableFact]
    public async Task A_query_parameter_holding_a_NUL_is_refused_naming_it()
    {
        var admin = await AdminAsync(server);
        var user = await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = Unique.Name("nul") }))).ExpectAsync(HttpStatusCode.Created);
        var logins = $"{Path(UsersUrl, user.GetProperty("id").GetString()!)}/logins";

        foreach (var (method, url, parameter) in new[]
                 {
                     (HttpMethod.Get, $"{ClientsUrl}?search=a%00", "search"), (HttpMethod.Get, $"{ScopesUrl}?search=%00", "search"),
                     (HttpMethod.Get, $"{UsersUrl}?search=%00", "search"), (HttpMethod.Get, $"{AuditUrl}?target_type=%00", "target_type"),
                     (HttpMethod.Get, $"{AuditUrl}?target_id=a%00", "target_id"), (HttpMethod.Delete, $"{logins}?provider=google&account_id=%00", "account_id"),
                 })
        {
            await (await admin.SendJsonAsync(method, url, null)).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", parameter);
        }

        await admin.GetJsonAsync($"{ClientsUrl}?search=a");
    }

    /// <summary>Disconnecting a provider account names it by both parameters: one missing or empty is a 400 naming it, not a 404 quoting nothing.</summary>
    [SkippableFact]
    public async Task Disconnecting_a_provider_account_without_naming_it_is_refused_naming_what_is_missing()
    {
        var admin = await AdminAsync(server);
        var user = await (await admin.PostJsonAsync(UsersUrl, Json(new { user_name = Unique.Name("logins") }))).ExpectAsync(HttpStatusCode.Created);
        var logins = $"{Path(UsersUrl, user.GetProperty("id").GetString()!)}/logins";

        foreach (var (query, parameter) in new[]
                 {
                     ("", "provider"), ("?account_id=z", "provider"), ("?provider=&account_id=z", "provider"),
                     ("?provider=google", "account_id"), ("?provider=google&account_id=", "account_id"),
                 })
        {
            await (await admin.SendJsonAsync(HttpMethod.Delete, logins + query, null)).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", parameter);
        }

        // Named, an account the user does not have is still not found.
        Assert.Equal(HttpStatusCode.NotFound, (await admin.SendJsonAsync(HttpMethod.Delete, $"{logins}?provider=google&account_id=z", null)).StatusCode);
    }

    internal static object Spa(string clientId, string redirectUri) => new
    {
        client_id = clientId,
        grant_types = new[] { "authorization_code", "refresh_token" },
        redirect_uris = new[] { redirectUri },
        token_endpoint_auth_method = "none",
        scope = "openid profile offline_access",
    };

    internal static string[] Strings(JsonElement json, string property) =>
        [.. json.GetProperty(property).EnumerateArray().Select(e => e.GetString()!)];
}

public sealed class SqliteAdminClientApiTests(SqliteServerFixture server)
    : AdminClientApiTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminClientApiTests(PostgreSqlServerFixture server)
    : AdminClientApiTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
