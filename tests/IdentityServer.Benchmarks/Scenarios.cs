using System.Net;
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
/// What the workers share: the server's address, the seed's credentials and the signed-in user's session cookie.
/// The workers send their requests over <see cref="LoopbackHttpConnection"/>s of their own; <see cref="Http"/> (no
/// cookies container, no redirects followed, <c>X-Forwarded-Proto: https</c> on every request since the server runs
/// as it would behind a TLS-terminating proxy) is for setting up: the health check, the login page, a first token.
/// </summary>
public sealed class BenchmarkClient : IDisposable
{
    public BenchmarkClient(Uri baseAddress, int connections, BenchmarkSeed seed)
    {
        Seed = seed;
        BaseAddress = baseAddress;
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
        MachineAuthorization = "Basic " +
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{BenchmarkSeed.MachineClientId}:{Uri.EscapeDataString(seed.MachineSecret)}"));
    }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public BenchmarkSeed Seed { get; }

    /// <summary>The machine client's HTTP Basic authorization header value.</summary>
    public string MachineAuthorization { get; }

    /// <summary>The session cookie header of the signed-in benchmark user (after <see cref="SignInAsync"/>).</summary>
    public string? SessionCookie { get; private set; }

    public async Task<string?> ClientCredentialsAsync(CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "connect/token")
        {
            Content = new StringContent(ClientCredentialsForm, Encoding.ASCII, "application/x-www-form-urlencoded"),
        };
        request.Headers.TryAddWithoutValidation("Authorization", MachineAuthorization);
        using var response = await Http.SendAsync(request, ct);
        var body = await response.Content.ReadAsByteArrayAsync(ct);
        return response.StatusCode == HttpStatusCode.OK ? JsonString(body, "access_token"u8) : null;
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

    /// <summary>
    /// Authorize with the session cookie, then redeem the code with PKCE, over the given connection. Returns the token
    /// response's body (valid until the connection's next request), or an error.
    /// </summary>
    public async Task<(ReadOnlyMemory<byte> Tokens, string? Error)> AuthorizeAndRedeemAsync(LoopbackHttpConnection connection, CancellationToken ct)
    {
        var verifier = BenchmarkSeed.Base64Url(RandomNumberGenerator.GetBytes(32));
        var challenge = BenchmarkSeed.Base64Url(SHA256.HashData(Encoding.ASCII.GetBytes(verifier)));
        var state = BenchmarkSeed.Base64Url(RandomNumberGenerator.GetBytes(12));
        var url = $"connect/authorize?response_type=code&client_id={BenchmarkSeed.AppClientId}" +
            $"&redirect_uri={Uri.EscapeDataString(BenchmarkSeed.AppRedirectUri)}&scope={Uri.EscapeDataString(BenchmarkSeed.AppScope)}" +
            $"&state={state}&nonce={state}&code_challenge={challenge}&code_challenge_method=S256";
        var redirect = await connection.SendAsync(LoopbackRequest.Build(BaseAddress, "GET", url, form: null,
            ("Cookie", SessionCookie ?? throw new InvalidOperationException("Not signed in."))), ct);
        var location = redirect.Location;
        if (redirect.Status != (int)HttpStatusCode.Redirect || location is null || !location.StartsWith(BenchmarkSeed.AppRedirectUri, StringComparison.Ordinal))
        {
            return (default, $"authorize answered {redirect.Status} to {location}");
        }

        var code = Regex.Match(location, "[?&]code=([^&]+)");
        if (!code.Success)
        {
            return (default, $"authorize redirected without a code: {location}");
        }

        var form = Form(("grant_type", "authorization_code"), ("client_id", BenchmarkSeed.AppClientId),
            ("code", Uri.UnescapeDataString(code.Groups[1].Value)), ("redirect_uri", BenchmarkSeed.AppRedirectUri), ("code_verifier", verifier));
        return Tokens(await connection.SendAsync(LoopbackRequest.Build(BaseAddress, "POST", "connect/token", form), ct));
    }

    public async Task<(ReadOnlyMemory<byte> Tokens, string? Error)> RefreshAsync(LoopbackHttpConnection connection, string refreshToken, CancellationToken ct)
    {
        var form = Form(("grant_type", "refresh_token"), ("client_id", BenchmarkSeed.AppClientId), ("refresh_token", refreshToken));
        return Tokens(await connection.SendAsync(LoopbackRequest.Build(BaseAddress, "POST", "connect/token", form), ct));
    }

    /// <summary>A new keep-alive connection to the server, for one worker.</summary>
    public LoopbackHttpConnection Connect() => new(new IPEndPoint(IPAddress.Parse(BaseAddress.Host), BaseAddress.Port));

    /// <summary>The string value of a top-level property of a JSON object, or null.</summary>
    public static string? JsonString(ReadOnlySpan<byte> json, ReadOnlySpan<byte> property)
    {
        var reader = new Utf8JsonReader(json);
        return ReadTo(ref reader, property) && reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
    }

    /// <summary>Whether a top-level property of a JSON object is <c>true</c>.</summary>
    public static bool JsonIsTrue(ReadOnlySpan<byte> json, ReadOnlySpan<byte> property)
    {
        var reader = new Utf8JsonReader(json);
        return ReadTo(ref reader, property) && reader.TokenType == JsonTokenType.True;
    }

    private static bool ReadTo(ref Utf8JsonReader reader, ReadOnlySpan<byte> property)
    {
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1 && reader.ValueTextEquals(property))
                {
                    return reader.Read();
                }
            }
        }
        catch (JsonException)
        {
        }

        return false;
    }

    private static (ReadOnlyMemory<byte> Tokens, string? Error) Tokens(LoopbackHttpResponse response) =>
        response.Status == (int)HttpStatusCode.OK
            ? (response.Body, null)
            : (default, $"token endpoint answered {response.Status}: {response.BodyText}");

    /// <summary>The machine client's token request body (it authenticates with <see cref="MachineAuthorization"/>).</summary>
    public static string ClientCredentialsForm => Form(("grant_type", "client_credentials"), ("scope", BenchmarkSeed.ApiScope));

    public static string Form(params (string Name, string Value)[] fields) =>
        string.Join('&', fields.Select(f => $"{Uri.EscapeDataString(f.Name)}={Uri.EscapeDataString(f.Value)}"));

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
        Task.FromResult<IWorker>(new Worker(client.Connect(), LoopbackRequest.Build(client.BaseAddress, "GET", path), path));

    private sealed class Worker(LoopbackHttpConnection connection, byte[] request, string path) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var response = await connection.SendAsync(request, ct);
            return response.Status == (int)HttpStatusCode.OK ? null : $"GET {path} answered {response.Status}";
        }

        public void Dispose() => connection.Dispose();
    }
}

public sealed class ClientCredentialsScenario : Scenario
{
    public override string Name => "client_credentials";

    public override double? TargetRatio => 0.5;

    public override double? TargetP99Milliseconds => 50;

    public override Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken) =>
        Task.FromResult<IWorker>(new Worker(client.Connect(), LoopbackRequest.Build(client.BaseAddress, "POST", "connect/token",
            BenchmarkClient.ClientCredentialsForm, ("Authorization", client.MachineAuthorization))));

    private sealed class Worker(LoopbackHttpConnection connection, byte[] request) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var response = await connection.SendAsync(request, ct);
            return response.Status == (int)HttpStatusCode.OK && response.Body.Span.IndexOf("\"access_token\""u8) >= 0
                ? null
                : $"token endpoint answered {response.Status}: {response.BodyText}";
        }

        public void Dispose() => connection.Dispose();
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
        return new Worker(client.Connect(), LoopbackRequest.Build(client.BaseAddress, "POST", "connect/introspect",
            $"token={token}&token_type_hint=access_token", ("Authorization", client.MachineAuthorization)));
    }

    private sealed class Worker(LoopbackHttpConnection connection, byte[] request) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var response = await connection.SendAsync(request, ct);
            return response.Status == (int)HttpStatusCode.OK && BenchmarkClient.JsonIsTrue(response.Body.Span, "active"u8)
                ? null
                : $"introspection answered {response.Status}: {response.BodyText}";
        }

        public void Dispose() => connection.Dispose();
    }
}

/// <summary>Each worker holds its own refresh token chain and rotates it on every request.</summary>
public sealed class RefreshScenario : Scenario
{
    public override string Name => "refresh_token";

    public override double? TargetRatio => 0.3;

    public override async Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken)
    {
        var connection = client.Connect();
        var (tokens, error) = await client.AuthorizeAndRedeemAsync(connection, cancellationToken);
        var refreshToken = error is null ? BenchmarkClient.JsonString(tokens.Span, "refresh_token"u8) : null;
        return new Worker(client, connection, refreshToken ?? throw new InvalidOperationException(error ?? "no refresh token in the response"));
    }

    private sealed class Worker(BenchmarkClient client, LoopbackHttpConnection connection, string refreshToken) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var (tokens, error) = await client.RefreshAsync(connection, refreshToken, ct);
            if (error is not null)
            {
                return error;
            }

            if (BenchmarkClient.JsonString(tokens.Span, "refresh_token"u8) is not { } next || tokens.Span.IndexOf("\"access_token\""u8) < 0)
            {
                return "no refresh or access token in the response";
            }

            refreshToken = next;
            return null;
        }

        public void Dispose() => connection.Dispose();
    }
}

/// <summary>A full sign-in of a user with a session: authorize (code, PKCE S256), then the token request.</summary>
public sealed class SignInScenario : Scenario
{
    public override string Name => "sign-in (authorize + token)";

    public override int RequestsPerOperation => 2;

    public override double? TargetRatio => 0.15;

    public override Task<IWorker> CreateWorkerAsync(BenchmarkClient client, CancellationToken cancellationToken) =>
        Task.FromResult<IWorker>(new Worker(client, client.Connect()));

    private sealed class Worker(BenchmarkClient client, LoopbackHttpConnection connection) : IWorker
    {
        public async Task<string?> RunOnceAsync(CancellationToken ct)
        {
            var (tokens, error) = await client.AuthorizeAndRedeemAsync(connection, ct);
            return error ?? (tokens.Span.IndexOf("\"id_token\""u8) >= 0 ? null : "no id_token in the response");
        }

        public void Dispose() => connection.Dispose();
    }
}
