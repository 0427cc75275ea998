using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace IdentityServer.Benchmarks;

/// <summary>What the benchmark seeds (through the server's Seed__ environment variables) and signs in with.</summary>
public sealed class BenchmarkSeed
{
    public const string ApiScope = "bench-api";
    public const string ApiAudience = "https://api.bench.test";
    public const string MachineClientId = "bench-machine";
    public const string AppClientId = "bench-app";
    public const string AppRedirectUri = "https://app.bench.test/callback";
    public const string AppScope = "openid profile offline_access bench-api";
    public const string UserName = "bench-user";

    /// <summary>A server-generated-style secret: 256 random bits.</summary>
    public string MachineSecret { get; } = Base64Url(RandomNumberGenerator.GetBytes(32));

    public string UserPassword { get; } = Base64Url(RandomNumberGenerator.GetBytes(18));

    public Dictionary<string, string> Settings() => new()
    {
        ["Seed:Scopes:0:name"] = ApiScope,
        ["Seed:Scopes:0:resources:0"] = ApiAudience,
        ["Seed:Clients:0:client_id"] = MachineClientId,
        ["Seed:Clients:0:client_secret"] = MachineSecret,
        ["Seed:Clients:0:grant_types:0"] = "client_credentials",
        ["Seed:Clients:0:token_endpoint_auth_method"] = "client_secret_basic",
        ["Seed:Clients:0:scope"] = ApiScope,
        ["Seed:Clients:1:client_id"] = AppClientId,
        ["Seed:Clients:1:token_endpoint_auth_method"] = "none",
        ["Seed:Clients:1:grant_types:0"] = "authorization_code",
        ["Seed:Clients:1:grant_types:1"] = "refresh_token",
        ["Seed:Clients:1:redirect_uris:0"] = AppRedirectUri,
        ["Seed:Clients:1:scope"] = AppScope,
        ["Seed:Clients:1:consent_type"] = "implicit",
        ["Seed:Users:0:user_name"] = UserName,
        ["Seed:Users:0:email"] = "bench-user@example.test",
        ["Seed:Users:0:email_verified"] = "true",
        ["Seed:Users:0:password"] = UserPassword,
    };

    public static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

/// <summary>
/// The load generator's HTTP client: one pool of keep-alive connections to the server, no cookies container (the
/// session cookie is sent as a header), no redirects followed, and <c>X-Forwarded-Proto: https</c> on every request
/// since the server runs as it would behind a TLS-terminating proxy.
/// </summary>
public sealed class BenchmarkClient : IDisposable
{
    public BenchmarkClient(Uri baseAddress, int connections, BenchmarkSeed seed)
    {
        Seed = seed;
        Http = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = connections,
            UseCookies = false,
            AllowAutoRedirect = false,
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        })
        {
            BaseAddress = baseAddress,
            Timeout = TimeSpan.FromSeconds(30),
        };
        Http.DefaultRequestHeaders.Add("X-Forwarded-Proto", "https");
        MachineAuthorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{BenchmarkSeed.MachineClientId}:{Uri.EscapeDataString(seed.MachineSecret)}")));
    }

    public HttpClient Http { get; }

    public BenchmarkSeed Seed { get; }

    public AuthenticationHeaderValue MachineAuthorization { get; }

    /// <summary>The session cookie header of the signed-in benchmark user (after <see cref="SignInAsync"/>).</summary>
    public string? SessionCookie { get; private set; }

    public async Task<string?> ClientCredentialsAsync(CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "connect/token")
        {
            Content = Form(("grant_type", "client_credentials"), ("scope", BenchmarkSeed.ApiScope)),
        };
        request.Headers.Authorization = MachineAuthorization;
        using var response = await Http.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        return response.StatusCode == HttpStatusCode.OK ? JsonDocument.Parse(body).RootElement.GetProperty("access_token").GetString() : null;
    }

    /// <summary>Signs the benchmark user in through the login page (antiforgery and all) and keeps the session cookie.</summary>
    public async Task SignInAsync(CancellationToken ct)
    {
        using var page = await Http.GetAsync("account/login?ReturnUrl=%2F", ct);
        var html = await page.Content.ReadAsStringAsync(ct);
        var antiforgery = Regex.Match(html, "name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"");
        if (page.StatusCode != HttpStatusCode.OK || !antiforgery.Success)
        {
            throw new InvalidOperationException($"The login page answered {(int)page.StatusCode} without an antiforgery field.");
        }

        using var post = new HttpRequestMessage(HttpMethod.Post, "account/login?ReturnUrl=%2F")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["Input.UserName"] = BenchmarkSeed.UserName,
                ["Input.Password"] = Seed.UserPassword,
                ["ReturnUrl"] = "/",
                ["__RequestVerificationToken"] = WebUtility.HtmlDecode(antiforgery.Groups[1].Value),
            }),
        };
        post.Headers.Add("Cookie", CookieHeader(page));
        using var signedIn = await Http.SendAsync(post, ct);
        await signedIn.Content.ReadAsStringAsync(ct);
        var cookie = CookieHeader(signedIn);
        if (signedIn.StatusCode != HttpStatusCode.Redirect || !cookie.Contains("idsrv.session", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"Signing in answered {(int)signedIn.StatusCode} without a session cookie.");
        }

        SessionCookie = cookie;
    }

    /// <summary>Authorize with the session cookie, then redeem the code with PKCE. Returns the token response, or an error.</summary>
    public async Task<(JsonElement? Tokens, string? Error)> AuthorizeAndRedeemAsync(CancellationToken ct)
    {
        var verifier = BenchmarkSeed.Base64Url(RandomNumberGenerator.GetBytes(32));
        var challenge = BenchmarkSeed.Base64Url(SHA256.HashData(Encoding.ASCII.GetBytes(verifier)));
        var state = BenchmarkSeed.Base64Url(RandomNumberGenerator.GetBytes(12));
        var url = $"connect/authorize?response_type=code&client_id={BenchmarkSeed.AppClientId}" +
            $"&redirect_uri={Uri.EscapeDataString(BenchmarkSeed.AppRedirectUri)}&scope={Uri.EscapeDataString(BenchmarkSeed.AppScope)}" +
            $"&state={state}&nonce={state}&code_challenge={challenge}&code_challenge_method=S256";
        using var authorize = new HttpRequestMessage(HttpMethod.Get, url);
        authorize.Headers.Add("Cookie", SessionCookie ?? throw new InvalidOperationException("Not signed in."));
        using var redirect = await Http.SendAsync(authorize, ct);
        await redirect.Content.ReadAsStringAsync(ct);
        var location = redirect.Headers.Location;
        if (redirect.StatusCode != HttpStatusCode.Redirect || location is null || !location.ToString().StartsWith(BenchmarkSeed.AppRedirectUri, StringComparison.Ordinal))
        {
            return (null, $"authorize answered {(int)redirect.StatusCode} to {location}");
        }

        var code = Regex.Match(location.Query, "[?&]code=([^&]+)");
        if (!code.Success)
        {
            return (null, $"authorize redirected without a code: {location}");
        }

        using var token = new HttpRequestMessage(HttpMethod.Post, "connect/token")
        {
            Content = Form(("grant_type", "authorization_code"), ("client_id", BenchmarkSeed.AppClientId),
                ("code", Uri.UnescapeDataString(code.Groups[1].Value)), ("redirect_uri", BenchmarkSeed.AppRedirectUri), ("code_verifier", verifier)),
        };
        return await ReadTokensAsync(await Http.SendAsync(token, ct), ct);
    }

    public async Task<(JsonElement? Tokens, string? Error)> RefreshAsync(string refreshToken, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "connect/token")
        {
            Content = Form(("grant_type", "refresh_token"), ("client_id", BenchmarkSeed.AppClientId), ("refresh_token", refreshToken)),
        };
        return await ReadTokensAsync(await Http.SendAsync(request, ct), ct);
    }

    private static async Task<(JsonElement? Tokens, string? Error)> ReadTokensAsync(HttpResponseMessage response, CancellationToken ct)
    {
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync(ct);
            return response.StatusCode == HttpStatusCode.OK
                ? (JsonDocument.Parse(body).RootElement, null)
                : (null, $"token endpoint answered {(int)response.StatusCode}: {body}");
        }
    }

    public static ByteArrayContent Form(params (string Name, string Value)[] fields)
    {
        var content = new ByteArrayContent(Encoding.ASCII.GetBytes(string.Join('&',
            fields.Select(f => $"{Uri.EscapeDataString(f.Name)}={Uri.EscapeDataString(f.Value)}"))));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
        return content;
    }

    private static string CookieHeader(HttpResponseMessage response) =>
        string.Join("; ", response.Headers.TryGetValues("Set-Cookie", out var cookies)
            ? cookies.Select(c => c.Split(';')[0])
            : []);

    public void Dispose() => Http.Dispose();
}

public sealed class GetScenario(string name, string path, double target) : Scenario
{
    public override string Name => name;

    public override double? TargetRatio => target;

    public override Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken) =>
        Task.FromResult<IWorker>(new Worker(client.Http, path));

    private sealed class Worker(HttpClient http, string path) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            using var response = await http.GetAsync(path, ct);
            await response.Content.ReadAsByteArrayAsync(ct);
            return response.StatusCode == HttpStatusCode.OK ? null : $"GET {path} answered {(int)response.StatusCode}";
        }
    }
}

public sealed class ClientCredentialsScenario : Scenario
{
    private static readonly byte[] Body = Encoding.ASCII.GetBytes($"grant_type=client_credentials&scope={BenchmarkSeed.ApiScope}");

    public override string Name => "client_credentials";

    public override double? TargetRatio => 0.5;

    public override Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken) =>
        Task.FromResult<IWorker>(new Worker(client));

    private sealed class Worker(BenchmarkClient client) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "connect/token") { Content = new ByteArrayContent(Body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
            request.Headers.Authorization = client.MachineAuthorization;
            using var response = await client.Http.SendAsync(request, ct);
            var body = await response.Content.ReadAsByteArrayAsync(ct);
            return response.StatusCode == HttpStatusCode.OK && body.AsSpan().IndexOf("\"access_token\""u8) >= 0
                ? null
                : $"token endpoint answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(body)}";
        }
    }
}

/// <summary>Introspection of a JWT access token by the client it was issued to.</summary>
public sealed class IntrospectionScenario : Scenario
{
    public override string Name => "introspection";

    public override double? TargetRatio => 1.0;

    public override async Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken)
    {
        var token = await client.ClientCredentialsAsync(cancellationToken)
            ?? throw new InvalidOperationException("Could not get an access token to introspect.");
        return new Worker(client, Encoding.ASCII.GetBytes($"token={token}&token_type_hint=access_token"));
    }

    private sealed class Worker(BenchmarkClient client, byte[] body) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "connect/introspect") { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
            request.Headers.Authorization = client.MachineAuthorization;
            using var response = await client.Http.SendAsync(request, ct);
            var answer = await response.Content.ReadAsByteArrayAsync(ct);
            return response.StatusCode == HttpStatusCode.OK && JsonDocument.Parse(answer).RootElement.GetProperty("active").GetBoolean()
                ? null
                : $"introspection answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(answer)}";
        }
    }
}

/// <summary>Each worker holds its own refresh token chain and rotates it on every request.</summary>
public sealed class RefreshScenario : Scenario
{
    public override string Name => "refresh_token";

    public override double? TargetRatio => 0.3;

    public override async Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken)
    {
        var (tokens, error) = await client.AuthorizeAndRedeemAsync(cancellationToken);
        return new Worker(client, tokens?.GetProperty("refresh_token").GetString() ?? throw new InvalidOperationException(error));
    }

    private sealed class Worker(BenchmarkClient client, string refreshToken) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var (tokens, error) = await client.RefreshAsync(refreshToken, ct);
            if (tokens?.TryGetProperty("refresh_token", out var next) == true && tokens.Value.TryGetProperty("access_token", out _))
            {
                refreshToken = next.GetString()!;
                return null;
            }

            return error ?? "no refresh token in the response";
        }
    }
}

/// <summary>A full sign-in of a user with a session: authorize (code, PKCE S256), then the token request.</summary>
public sealed class SignInScenario : Scenario
{
    public override string Name => "sign-in (authorize + token)";

    public override int RequestsPerOperation => 2;

    public override double? TargetRatio => 0.15;

    public override Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken) =>
        Task.FromResult<IWorker>(new Worker(client));

    private sealed class Worker(BenchmarkClient client) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var (tokens, error) = await client.AuthorizeAndRedeemAsync(ct);
            return tokens?.TryGetProperty("id_token", out _) == true ? null : error ?? "no id_token in the response";
        }
    }
}
