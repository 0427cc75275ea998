using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;
using Xunit.Abstractions;

namespace IdentityServer.Tests.Data;

/// <summary>
/// Nothing acknowledged is lost: the real server process, under concurrent client_credentials and refresh token
/// load, is killed (SIGKILL) or stopped (SIGTERM) with requests in flight, then started again on the same database.
/// Every access token it answered with is still active at the introspection endpoint (so its token entry was
/// stored before the answer), and every refresh chain's last answered refresh token still refreshes (never
/// half-redeemed). Clients reach the server through one public name, as behind a load balancer, so the issuer
/// stays the same when the instance behind it changes.
/// </summary>
public abstract class CrashRecoveryTests(ITestOutputHelper output)
{
    private const int Workers = 8;
    private const int RoundsPerWorker = 40;          // the bound: at most 80 token requests per worker
    private const int AnsweredBeforeStopping = 60;   // stop once this many token requests have been answered
    private const string RedirectUri = "https://app.test/callback";

    /// <summary>The database settings (provider, connection string) for a fresh database, or a skip.</summary>
    protected abstract Task<Dictionary<string, string?>> CreateDatabaseAsync();

    protected abstract Task DropDatabaseAsync();

    [SkippableFact]
    public Task Every_token_answered_before_a_kill_9_under_load_is_still_good_after_the_restart() =>
        RunAsync(server =>
        {
            server.Kill();
            return Task.CompletedTask;
        });

    [SkippableFact]
    public Task Every_token_answered_before_a_graceful_stop_under_load_is_still_good_after_the_restart() =>
        RunAsync(async server => Assert.Equal(0, await server.StopAsync()));

    private async Task RunAsync(Func<ServerProcess, Task> stop)
    {
        var database = await CreateDatabaseAsync();
        try
        {
            await RunOnDatabaseAsync(database, stop);
        }
        finally
        {
            await DropDatabaseAsync();
        }
    }

    private async Task RunOnDatabaseAsync(Dictionary<string, string?> database, Func<ServerProcess, Task> stop)
    {
        var machine = new SeededClient(Unique.Name("crash-machine"), Unique.Secret());
        var app = Unique.Name("crash-app");
        var user = new TestUser(string.Empty, Unique.Name("crash-user"), Unique.Secret(), string.Empty);
        var environment = Environment(database, machine, app, user);
        var frontDoor = new FrontDoor();

        var clock = Stopwatch.StartNew();
        var server = await ServerProcess.StartHealthyAsync(environment);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: started on an empty database.");
        var load = new Load();
        try
        {
            frontDoor.PointAt(server);
            using var http = frontDoor.CreateClient();
            var endpoints = await HttpProtocol.DiscoverAsync(http);
            var tokenEndpoint = endpoints.GetProperty("token_endpoint").GetString()!;

            // Each worker's own refresh chain, started by a code flow in a browser (one sign-in, one session).
            var browser = new Browser(new() { [FrontDoor.Host] = frontDoor.CreateHandler() });
            var chains = new List<string>();
            for (var i = 0; i < Workers; i++)
            {
                chains.Add(await StartRefreshChainAsync(browser, http, endpoints, app, user));
            }

            output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: {Workers} refresh chains started.");

            // Concurrent load; stop the server once enough has been answered, with requests in flight.
            var workers = chains.Select((chain, index) => Task.Run(() => WorkAsync(http, tokenEndpoint, machine, app, index, chain, load))).ToList();
            var allDone = Task.WhenAll(workers);
            Assert.True(await Task.WhenAny(load.Threshold.Task, allDone) == load.Threshold.Task,
                $"The workers ended before {AnsweredBeforeStopping} answers: {string.Join("; ", load.Unexpected)}\n{server.Output}");
            var inFlightAtStop = Volatile.Read(ref load.InFlight);
            output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: stopping under load.");
            await stop(server);
            await allDone;

            Assert.True(inFlightAtStop > 0, "No request was in flight when the server was stopped.");
            Assert.True(load.Unexpected.IsEmpty, $"Answers other than 200 before the stop: {string.Join("; ", load.Unexpected.Take(5))}\n{server.Output}");
            output.WriteLine($"{load.AccessTokens.Count} access tokens answered ({load.Refreshes} by refresh), {inFlightAtStop} requests in flight at the stop, {load.Lost} left unanswered.");
        }
        finally
        {
            await server.DisposeAsync();
        }

        // The same database, a new instance behind the same name.
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: stopped.");
        await using var again = await ServerProcess.StartHealthyAsync(environment);
        frontDoor.PointAt(again);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: restarted and healthy.");
        using var after = frontDoor.CreateClient();
        var discovery = await HttpProtocol.DiscoverAsync(after);

        var inactive = new ConcurrentBag<string>();
        await Parallel.ForEachAsync(load.AccessTokens, new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (token, _) =>
        {
            var (active, result) = await IsActiveAsync(after, discovery, machine, token.Value);
            if (!active)
            {
                inactive.Add($"{token.Source}: {result}");
            }
        });
        Assert.True(inactive.IsEmpty, $"{inactive.Count} of {load.AccessTokens.Count} answered access tokens are not active after the restart: {string.Join("; ", inactive.Take(5))}\n{again.Output}");

        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: every answered access token introspected.");
        var tokenEndpointAfter = discovery.GetProperty("token_endpoint").GetString()!;
        for (var worker = 0; worker < Workers; worker++)
        {
            var response = await RefreshAsync(after, tokenEndpointAfter, app, load.LastRefreshTokens[worker]);
            var json = await OAuth.ReadJsonAsync(response);
            Assert.True(response.StatusCode == HttpStatusCode.OK,
                $"Worker {worker}'s last answered refresh token does not refresh after the restart: {json}\n{again.Output}");

            // The chain was not revoked on the way: the access token of this refresh is active.
            var (active, fresh) = await IsActiveAsync(after, discovery, machine, json.GetProperty("access_token").GetString()!);
            Assert.True(active, fresh);
        }
    }

    private static async Task WorkAsync(HttpClient http, string tokenEndpoint, SeededClient machine, string app, int worker, string refreshToken, Load load)
    {
        load.LastRefreshTokens[worker] = refreshToken;
        for (var round = 0; round < RoundsPerWorker; round++)
        {
            var machineToken = await SendAsync(load, () => ClientCredentialsRequest(tokenEndpoint, machine));
            if (machineToken is null)
            {
                return;
            }

            load.Answered(new AnsweredToken($"client_credentials (worker {worker}, round {round})", machineToken.Value.GetProperty("access_token").GetString()!));

            var refreshed = await SendAsync(load, () => RefreshRequest(tokenEndpoint, app, load.LastRefreshTokens[worker]));
            if (refreshed is null)
            {
                return;
            }

            load.LastRefreshTokens[worker] = refreshed.Value.GetProperty("refresh_token").GetString()!;
            Interlocked.Increment(ref load.Refreshes);
            load.Answered(new AnsweredToken($"refresh (worker {worker}, round {round})", refreshed.Value.GetProperty("access_token").GetString()!));
        }

        async Task<JsonElement?> SendAsync(Load load, Func<HttpRequestMessage> request)
        {
            Interlocked.Increment(ref load.InFlight);
            try
            {
                using var message = request();
                using var response = await http.SendAsync(message);
                var body = await response.Content.ReadAsStringAsync();
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    load.Unexpected.Add($"{(int)response.StatusCode} {body}");
                    return null;
                }

                return JsonDocument.Parse(body).RootElement.Clone();
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
            {
                // The server went away before answering: nothing was acknowledged, and this worker is done.
                Interlocked.Increment(ref load.Lost);
                return null;
            }
            finally
            {
                Interlocked.Decrement(ref load.InFlight);
            }
        }
    }

    private static async Task<string> StartRefreshChainAsync(Browser browser, HttpClient http, JsonElement endpoints, string app, TestUser user)
    {
        var pkce = Pkce.Create();
        var authorize = QueryHelpers.AddQueryString(endpoints.GetProperty("authorization_endpoint").GetString()!, new Dictionary<string, string?>
        {
            ["response_type"] = "code",
            ["client_id"] = app,
            ["redirect_uri"] = RedirectUri,
            ["scope"] = "openid offline_access",
            ["state"] = Unique.Name("state"),
            ["code_challenge"] = pkce.Challenge,
            ["code_challenge_method"] = "S256",
        });
        var callback = await OAuth.AuthorizeAsync(browser, authorize, user);
        Assert.True(callback.ContainsKey("code"), string.Join(", ", callback));

        using var response = await http.PostAsync(endpoints.GetProperty("token_endpoint").GetString(), new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["client_id"] = app,
            ["code"] = callback["code"],
            ["redirect_uri"] = RedirectUri,
            ["code_verifier"] = pkce.Verifier,
        }));
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        return json.GetProperty("refresh_token").GetString()!;
    }

    private static HttpRequestMessage ClientCredentialsRequest(string tokenEndpoint, SeededClient machine) => new(HttpMethod.Post, tokenEndpoint)
    {
        Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = "client_credentials" }),
        Headers = { Authorization = machine.BasicAuth },
    };

    private static HttpRequestMessage RefreshRequest(string tokenEndpoint, string app, string refreshToken) => new(HttpMethod.Post, tokenEndpoint)
    {
        Content = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "refresh_token",
            ["client_id"] = app,
            ["refresh_token"] = refreshToken,
        }),
    };

    private static async Task<HttpResponseMessage> RefreshAsync(HttpClient http, string tokenEndpoint, string app, string refreshToken)
    {
        using var request = RefreshRequest(tokenEndpoint, app, refreshToken);
        return await http.SendAsync(request);
    }

    /// <summary>
    /// Whether the server still holds the token active: the machine's own tokens at the introspection endpoint (only the
    /// client a token was issued to, or its audience, may introspect it), the app's (a public client's, with openid) at
    /// userinfo, which checks the token's entry as introspection does.
    /// </summary>
    private static async Task<(bool Active, string Answer)> IsActiveAsync(HttpClient http, JsonElement discovery, SeededClient machine, string token)
    {
        if (Jwt.Payload(token).GetProperty("client_id").GetString() == machine.ClientId)
        {
            var introspected = await IntrospectAsync(http, discovery, machine, token);
            return (introspected.TryGetProperty("active", out var active) && active.GetBoolean(), introspected.ToString());
        }

        using var request = new HttpRequestMessage(HttpMethod.Get, discovery.GetProperty("userinfo_endpoint").GetString());
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await http.SendAsync(request);
        return (response.StatusCode == HttpStatusCode.OK, $"userinfo {(int)response.StatusCode} {response.Headers.WwwAuthenticate}");
    }

    private static async Task<JsonElement> IntrospectAsync(HttpClient http, JsonElement discovery, SeededClient caller, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, discovery.GetProperty("introspection_endpoint").GetString())
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = token, ["token_type_hint"] = "access_token" }),
            Headers = { Authorization = caller.BasicAuth },
        };
        using var response = await http.SendAsync(request);
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {json}");
        return json;
    }

    /// <summary>
    /// The server's configuration as environment variables: the database, a fixed public issuer, and the seed
    /// (a confidential machine client, which also introspects; a public app; a user) after the development seed's entries.
    /// </summary>
    private static Dictionary<string, string?> Environment(Dictionary<string, string?> database, SeededClient machine, string app, TestUser user)
    {
        var seed = Repository.DevelopmentSeed();
        var c = seed.GetProperty("Clients").GetArrayLength();
        var u = seed.GetProperty("Users").GetArrayLength();
        return new Dictionary<string, string?>(database)
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Development",
            ["Tokens__Issuer"] = FrontDoor.Address.ToString(),
            // A refresh committed in the instant between the commit and the answer reaching the client is redeemed
            // without the client knowing; its retry is what the reuse leeway is for, and the leeway must outlast the
            // restart, which on a loaded machine can take longer than the default 30 s. (TokenTransactionTests
            // show, with no leeway at all, that a request that dies before its commit leaves the token untouched.)
            ["Tokens__RefreshTokenReuseLeeway"] = "00:05:00",
            [$"Seed__Clients__{c}__client_id"] = machine.ClientId,
            [$"Seed__Clients__{c}__client_secret"] = machine.Secret,
            [$"Seed__Clients__{c}__grant_types__0"] = "client_credentials",
            [$"Seed__Clients__{c + 1}__client_id"] = app,
            [$"Seed__Clients__{c + 1}__token_endpoint_auth_method"] = "none",
            [$"Seed__Clients__{c + 1}__grant_types__0"] = "authorization_code",
            [$"Seed__Clients__{c + 1}__grant_types__1"] = "refresh_token",
            [$"Seed__Clients__{c + 1}__redirect_uris__0"] = RedirectUri,
            [$"Seed__Clients__{c + 1}__scope"] = "openid offline_access",
            [$"Seed__Clients__{c + 1}__consent_type"] = "implicit",
            [$"Seed__Users__{u}__user_name"] = user.UserName,
            [$"Seed__Users__{u}__email"] = $"{user.UserName}@example.test",
            [$"Seed__Users__{u}__password"] = user.Password,
            [$"Seed__Users__{u}__email_verified"] = "true",
        };
    }

    private sealed record SeededClient(string ClientId, string Secret)
    {
        public AuthenticationHeaderValue BasicAuth => new("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Uri.EscapeDataString(ClientId)}:{Uri.EscapeDataString(Secret)}")));
    }

    private sealed record AnsweredToken(string Source, string Value);

    /// <summary>What the workers saw: every answered access token, each chain's last answered refresh token.</summary>
    private sealed class Load
    {
        public readonly ConcurrentBag<AnsweredToken> AccessTokens = [];
        public readonly string[] LastRefreshTokens = new string[Workers];
        public readonly ConcurrentBag<string> Unexpected = [];
        public readonly TaskCompletionSource Threshold = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int InFlight;
        public int Refreshes;
        public int Lost;
        private int _answered;

        public void Answered(AnsweredToken token)
        {
            AccessTokens.Add(token);
            if (Interlocked.Increment(ref _answered) == AnsweredBeforeStopping)
            {
                Threshold.TrySetResult();
            }
        }
    }

    /// <summary>
    /// The server's one public name (the issuer), routed to whichever instance currently runs, as a load balancer
    /// or DNS would: connections to <see cref="Host"/> go to that instance's loopback port.
    /// </summary>
    private sealed class FrontDoor
    {
        public const string Host = "identity.crash.test";

        public static readonly Uri Address = new($"http://{Host}/");

        private volatile int _port;

        public void PointAt(ServerProcess server) => _port = server.Port;

        public SocketsHttpHandler CreateHandler() => new()
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(IPAddress.Loopback, _port, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };

        public HttpClient CreateClient() => new(CreateHandler()) { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(30) };
    }
}

public sealed class SqliteCrashRecoveryTests(ITestOutputHelper output) : CrashRecoveryTests(output)
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "idsrv-crash-tests", Guid.NewGuid().ToString("N"));

    protected override Task<Dictionary<string, string?>> CreateDatabaseAsync()
    {
        Directory.CreateDirectory(_folder);
        return Task.FromResult(new Dictionary<string, string?>
        {
            ["Database__Provider"] = "Sqlite",
            ["ConnectionStrings__IdentityServer"] = $"Data Source={Path.Combine(_folder, "identity.db")}",
        });
    }

    protected override Task DropDatabaseAsync()
    {
        Directory.Delete(_folder, recursive: true);
        return Task.CompletedTask;
    }
}

public sealed class PostgreSqlCrashRecoveryTests(ITestOutputHelper output) : CrashRecoveryTests(output)
{
    private string? _connectionString;

    protected override async Task<Dictionary<string, string?>> CreateDatabaseAsync()
    {
        Skip.IfNot(PostgreSqlCluster.IsAvailable, PostgreSqlCluster.InstallHint);
        _connectionString = await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync();
        return new Dictionary<string, string?>
        {
            ["Database__Provider"] = "PostgreSql",
            ["ConnectionStrings__IdentityServer"] = _connectionString,
        };
    }

    protected override async Task DropDatabaseAsync()
    {
        if (_connectionString is not null)
        {
            await (await PostgreSqlCluster.SharedAsync()).DropDatabaseAsync(_connectionString);
        }
    }
}
