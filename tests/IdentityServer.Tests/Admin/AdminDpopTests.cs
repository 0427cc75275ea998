using System.Net;
using System.Net.Http.Headers;
using IdentityServer.Tests.Authorization;
using IdentityServer.Tests.Infrastructure;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// The admin API takes DPoP-bound access tokens as RFC 9449 section 7.1 has a resource take them: with the DPoP scheme
/// and, for each request, a proof by the token's key for that request (method, URL, the token's hash), used once.
/// </summary>
public abstract class AdminDpopTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_bound_admin_token_with_the_DPoP_scheme_and_a_proof_by_its_key_is_taken_for_reads_and_changes()
    {
        var (key, token) = await BoundAdminTokenAsync();

        using var list = await SendAsync(HttpMethod.Get, ClientsUrl, "DPoP", token, await ProofAsync(key, "GET", ClientsUrl, token));
        var scopeName = Unique.Name("dpop-scope");
        using var created = await SendAsync(HttpMethod.Post, ScopesUrl, "DPoP", token, await ProofAsync(key, "POST", ScopesUrl, token),
            $$"""{"name":"{{scopeName}}","resources":["{{TestApi.NewAudience()}}"]}""");

        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        await created.ExpectAsync(HttpStatusCode.Created); // no antiforgery token: a script's token, not a browser's cookie
    }

    [SkippableFact]
    public async Task A_proof_is_used_once()
    {
        var (key, token) = await BoundAdminTokenAsync();
        var proof = await ProofAsync(key, "GET", ClientsUrl, token);

        using var first = await SendAsync(HttpMethod.Get, ClientsUrl, "DPoP", token, proof);
        using var replayed = await SendAsync(HttpMethod.Get, ClientsUrl, "DPoP", token, proof);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        await ExpectDpopRefusalAsync(replayed, "invalid_dpop_proof", "already used");
    }

    public static TheoryData<string> BrokenPresentations() =>
        ["no proof", "a proof by another key", "a proof for another URL", "a proof for another method", "a proof without the token's hash",
            "two proofs", "an unbound token with the DPoP scheme"];

    [SkippableTheory]
    [MemberData(nameof(BrokenPresentations))]
    public async Task A_DPoP_presentation_that_does_not_hold_is_a_401_DPoP_challenge(string broken)
    {
        var (key, token) = await BoundAdminTokenAsync();
        var (error, description) = broken switch
        {
            "a proof by another key" => ("invalid_token", "another key"),
            "an unbound token with the DPoP scheme" => ("invalid_token", "not DPoP-bound"),
            "no proof" => ("invalid_dpop_proof", "needs a DPoP proof"),
            "two proofs" => ("invalid_dpop_proof", "one DPoP header"),
            "a proof for another URL" => ("invalid_dpop_proof", "'htu'"),
            "a proof for another method" => ("invalid_dpop_proof", "'htm'"),
            _ => ("invalid_dpop_proof", "'ath'"),
        };
        var presented = broken == "an unbound token with the DPoP scheme" ? await MachineTokenAsync(server, "admin") : token;
        var proofs = broken switch
        {
            "no proof" => [],
            "a proof by another key" => [await ProofAsync(new DpopKey("ES256"), "GET", ClientsUrl, token)],
            "a proof for another URL" => [await ProofAsync(key, "GET", UsersUrl, token)],
            "a proof for another method" => [await ProofAsync(key, "POST", ClientsUrl, token)],
            "a proof without the token's hash" => [await ProofAsync(key, "GET", ClientsUrl, null)],
            "two proofs" => [await ProofAsync(key, "GET", ClientsUrl, token), await ProofAsync(key, "GET", ClientsUrl, token)],
            _ => new[] { await ProofAsync(new DpopKey("ES256"), "GET", ClientsUrl, presented) },
        };

        using var response = await SendAsync(HttpMethod.Get, ClientsUrl, "DPoP", presented, proofs);

        await ExpectDpopRefusalAsync(response, error, description);
    }

    [SkippableFact]
    public async Task A_bound_token_sent_as_a_bearer_token_is_refused_with_a_DPoP_challenge_even_with_a_proof()
    {
        var (key, token) = await BoundAdminTokenAsync();

        using var response = await SendAsync(HttpMethod.Get, ClientsUrl, "Bearer", token, await ProofAsync(key, "GET", ClientsUrl, token));

        await ExpectDpopRefusalAsync(response, "invalid_token", null);
    }

    private async Task<(DpopKey Key, string Token)> BoundAdminTokenAsync()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var key = new DpopKey("ES256");
        var response = await DpopKey.PostAsync(server, "token_endpoint", new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = "admin" },
            await key.ProofAsync(server, "POST", "token_endpoint"), client);
        return (key, (await response.ExpectAsync(HttpStatusCode.OK)).GetProperty("access_token").GetString()!);
    }

    /// <summary>A proof for <paramref name="method"/> to the admin API's <paramref name="path"/> under the issuer, with the token's hash if given.</summary>
    private async Task<string> ProofAsync(DpopKey key, string method, string path, string? accessToken) =>
        key.Proof(method, new Uri(new Uri(await server.EndpointAsync("issuer")), path).AbsoluteUri, payload: p =>
        {
            if (accessToken is not null)
            {
                p["ath"] = IdentityServer.Dpop.DpopProofReader.AccessTokenHash(accessToken);
            }
        });

    private Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string scheme, string token, string proof, string? json = null) =>
        SendAsync(method, path, scheme, token, [proof], json);

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string scheme, string token, string[] proofs, string? json = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue(scheme, token);
        foreach (var proof in proofs)
        {
            request.Headers.Add("DPoP", proof);
        }

        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }

        return await server.CreateClient().SendAsync(request);
    }

    private static async Task ExpectDpopRefusalAsync(HttpResponseMessage response, string error, string? descriptionContains)
    {
        var challenge = response.Headers.WwwAuthenticate.Single();
        Assert.Equal("DPoP", challenge.Scheme);
        Assert.Contains($"error=\"{error}\"", challenge.Parameter);
        Assert.Contains("algs=\"", challenge.Parameter);
        var body = await response.ExpectErrorAsync(HttpStatusCode.Unauthorized, error);
        if (descriptionContains is not null)
        {
            Assert.Contains(descriptionContains, body.GetProperty("error_description").GetString());
        }
    }
}

public sealed class SqliteAdminDpopTests(SqliteServerFixture server) : AdminDpopTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminDpopTests(PostgreSqlServerFixture server) : AdminDpopTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
