using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Admin;

/// <summary>Calls to the admin API as a script would make them: a machine client's bearer token with the admin scope.</summary>
public static class AdminApiCalls
{
    public const string ClientsUrl = "/api/admin/clients";
    public const string ScopesUrl = "/api/admin/scopes";
    public const string UsersUrl = "/api/admin/users";
    public const string RolesUrl = "/api/admin/roles";
    public const string AuditUrl = "/api/admin/audit";

    private static readonly ConditionalWeakTable<ServerFixture, Task<string>> AdminTokens = new();

    /// <summary>An HTTP client that calls as one admin machine client (registered once per server).</summary>
    public static async Task<HttpClient> AdminAsync(ServerFixture server) =>
        WithBearer(server, await AdminTokens.GetValue(server, s => MachineTokenAsync(s, "admin")));

    public static HttpClient WithBearer(ServerFixture server, string token)
    {
        var http = server.CreateClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return http;
    }

    /// <summary>A client credentials access token for a new machine client allowed <paramref name="scope"/>.</summary>
    public static async Task<string> MachineTokenAsync(ServerFixture server, string scope)
    {
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = scope);
        return await TokenAsync(server, client.ClientId, client.ClientSecret!, scope);
    }

    public static async Task<string> TokenAsync(ServerFixture server, string clientId, string secret, string scope)
    {
        var response = await ClientCredentialsAsync(server, clientId, secret, scope);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {json}");
        return json.GetProperty("access_token").GetString()!;
    }

    public static Task<HttpResponseMessage> ClientCredentialsAsync(ServerFixture server, string clientId, string secret, string scope) =>
        OAuth.PostTokenAsync(server, new Dictionary<string, string> { ["grant_type"] = "client_credentials", ["scope"] = scope },
            new TestClient(clientId, secret, new()));

    public static Task<HttpResponseMessage> PostJsonAsync(this HttpClient http, string url, string json, string? ifMatch = null) =>
        SendJsonAsync(http, HttpMethod.Post, url, json, ifMatch);

    public static Task<HttpResponseMessage> PutJsonAsync(this HttpClient http, string url, string json, string? ifMatch = null) =>
        SendJsonAsync(http, HttpMethod.Put, url, json, ifMatch);

    public static async Task<HttpResponseMessage> SendJsonAsync(this HttpClient http, HttpMethod method, string url, string? json, string? ifMatch = null)
    {
        using var request = new HttpRequestMessage(method, url);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        if (ifMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        }

        return await http.SendAsync(request);
    }

    public static Task<HttpResponseMessage> DeleteAsync(this HttpClient http, string url, string? ifMatch) =>
        SendJsonAsync(http, HttpMethod.Delete, url, null, ifMatch);

    /// <summary>The response's JSON body, asserting the status first (the body is in the message when it differs).</summary>
    public static async Task<JsonElement> ExpectAsync(this HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"Expected {(int)status}, got {(int)response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>Asserts an admin API error: the status, the error code and (optionally) the field it names.</summary>
    public static async Task<JsonElement> ExpectErrorAsync(this HttpResponseMessage response, HttpStatusCode status, string error, string? field = null)
    {
        var json = await response.ExpectAsync(status);
        Assert.Equal(error, json.GetProperty("error").GetString());
        Assert.False(string.IsNullOrEmpty(json.GetProperty("error_description").GetString()));
        if (field is not null)
        {
            var fields = json.GetProperty("errors").EnumerateArray().Select(e => e.GetProperty("field").GetString()).ToList();
            Assert.True(fields.Contains(field), $"No error for field {field}: {json}");
        }

        return json;
    }

    /// <summary>
    /// Lists <paramref name="collection"/> (one entry matches <paramref name="search"/>) past its end, with page numbers
    /// whose offset, (page - 1) * page_size, does not fit an int, and page numbers and sizes that do not fit one
    /// themselves (answered as the largest, as numbers below 1 are as 1): each page is empty, never the first page again.
    /// </summary>
    public static async Task AssertPagesPastTheEndAreEmptyAsync(HttpClient admin, string collection, string search)
    {
        foreach (var (page, size, answered) in new[] { ("2", "200", 2), ("10737420", "200", 10737420), ("2147483647", "200", int.MaxValue),
                     ("2147483647", "1", int.MaxValue), ("2147483648", "200", int.MaxValue), ("99999999999999999999999999999999", "1", int.MaxValue),
                     ("2", "99999999999", 2) })
        {
            var json = await admin.GetJsonAsync($"{collection}?search={search}&page={page}&page_size={size}");
            Assert.True(json.GetProperty("items").GetArrayLength() == 0, $"page={page}&page_size={size}: {json}");
            Assert.Equal(1, json.GetProperty("total").GetInt32());
            Assert.Equal(answered, json.GetProperty("page").GetInt32());
        }

        Assert.Equal(1, (await admin.GetJsonAsync($"{collection}?search={search}&page=1")).GetProperty("items").GetArrayLength());
    }

    /// <summary>
    /// Lists <paramref name="collection"/> with a page or page size that is not a whole number, or is given twice: each is
    /// 400 invalid_request naming the parameter, not an error that names nothing.
    /// </summary>
    public static async Task AssertPagingThatIsNotAWholeNumberIsRefusedNamingTheParameterAsync(HttpClient admin, string collection)
    {
        foreach (var (query, parameter) in new[] { ("page=abc", "page"), ("page=1.5", "page"), ("page=", "page"), ("page=1&page=2", "page"),
                     ("page_size=abc", "page_size"), ("page_size=", "page_size"), ("page_size=10&page_size=20", "page_size") })
        {
            await (await admin.GetAsync($"{collection}?{query}")).ExpectErrorAsync(HttpStatusCode.BadRequest, "invalid_request", parameter);
        }
    }

    public static string ETagOf(HttpResponseMessage response) =>
        response.Headers.ETag?.ToString() ?? throw new InvalidOperationException("The response has no ETag.");

    public static async Task<JsonElement> GetJsonAsync(this HttpClient http, string url) =>
        await (await http.GetAsync(url)).ExpectAsync(HttpStatusCode.OK);

    public static string Json(object value) => JsonSerializer.Serialize(value);

    public static string Path(string collection, string id) => $"{collection}/{Uri.EscapeDataString(id)}";

    public static async Task<JsonElement> AuditForAsync(HttpClient admin, string targetType, string targetId) =>
        (await admin.GetJsonAsync($"{AuditUrl}?target_type={targetType}&target_id={Uri.EscapeDataString(targetId)}")).GetProperty("items");
}
