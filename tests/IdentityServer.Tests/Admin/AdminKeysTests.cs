using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using IdentityServer.Keys;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using static IdentityServer.Tests.Admin.AdminApiCalls;

namespace IdentityServer.Tests.Admin;

/// <summary>Signing keys through the admin API: the same access rules as the rest of it, audited, and a rotation takes effect everywhere at once.</summary>
public abstract class AdminKeysTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    [SkippableFact]
    public async Task A_rotation_through_the_api_is_audited_and_admin_tokens_signed_with_the_new_key_are_accepted()
    {
        var admin = await AdminAsync(server);

        var rotated = await admin.PostAsync("/api/admin/keys/rotate", null);
        Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
        var kid = (await rotated.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("kid").GetString();

        var fresh = await MachineTokenAsync(server, "admin");
        Assert.Equal(kid, Jwt.Header(fresh).GetProperty("kid").GetString());
        Assert.Equal(HttpStatusCode.OK, (await WithBearer(server, fresh).GetAsync(ClientsUrl)).StatusCode);

        var audit = await (await admin.GetAsync($"{AuditUrl}?target_type=key&target_id={kid}")).Content.ReadFromJsonAsync<JsonElement>();
        Assert.Contains(audit.GetProperty("items").EnumerateArray(), e => e.GetProperty("action").GetString() == "key.rotated");
    }

    /// <summary>With ES256 a rotation moves the RSA identity key too, and the audit has an entry for each new key, naming its use.</summary>
    [SkippableFact]
    public async Task With_ES256_a_rotation_audits_the_new_signing_key_and_the_new_identity_key()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        await using var factory = server.StartServer(new Dictionary<string, string?>
        {
            ["ConnectionStrings:IdentityServer"] = await TestDatabases.CreateAsync(server.Provider),
            ["Keys:Algorithm"] = "ES256",
        });
        var admin = await AdminAsync(new AttachedServer(factory, server.Provider));

        var rotated = await admin.PostAsync("/api/admin/keys/rotate", null);

        Assert.Equal("sig", (await rotated.ExpectAsync(HttpStatusCode.OK)).GetProperty("use").GetString());
        var active = (await admin.GetFromJsonAsync<JsonElement>("/api/admin/keys")).GetProperty("keys").EnumerateArray()
            .Where(k => k.GetProperty("state").GetString() == "active").ToList();
        Assert.Equal(["id-sig", "sig"], active.Select(k => k.GetProperty("use").GetString()).Order());
        foreach (var key in active)
        {
            var entry = Assert.Single((await AuditForAsync(admin, "key", key.GetProperty("kid").GetString()!)).EnumerateArray());
            Assert.Equal("key.rotated", entry.GetProperty("action").GetString());
            Assert.Equal(key.GetProperty("use").GetString(), entry.GetProperty("after").GetProperty("use").GetString());
            Assert.Equal(key.GetProperty("use").GetString(), entry.GetProperty("before").GetProperty("use").GetString());
        }
    }

    /// <summary>
    /// A caller that goes away as soon as the key is rotated (its request aborted then) leaves the rotation audited all
    /// the same: the entry is written with the rotation, which the request's cancellation does not stop halfway.
    /// </summary>
    [SkippableFact]
    public async Task A_rotation_whose_request_is_aborted_once_the_key_is_rotated_is_still_audited()
    {
        using var aborted = new CancellationTokenSource();
        await using var factory = server.StartServer(testServices: services =>
        {
            services.AddSingleton<ILoggerProvider>(new CancelOnEvent(KeyEvents.RotatedNow, aborted));
            services.AddSingleton<IStartupFilter>(new AbortRotationWith(aborted.Token));
        });
        var attached = new AttachedServer(factory, server.Provider);
        var admin = await AdminAsync(attached);
        var before = await ActiveKeyIdAsync(admin);
        try
        {
            var rotated = await admin.PostAsync("/api/admin/keys/rotate", null);

            Assert.True(aborted.IsCancellationRequested);
            await factory.Services.GetRequiredService<KeyRing>().RefreshAsync(default); // the keys as stored, whatever the request left loaded
            var active = await ActiveKeyIdAsync(admin);
            Assert.NotEqual(before, active);
            var audit = await AuditForAsync(admin, "key", active);
            Assert.Contains(audit.EnumerateArray(), e => e.GetProperty("action").GetString() == "key.rotated");
            Assert.Equal(active, (await rotated.ExpectAsync(HttpStatusCode.OK)).GetProperty("kid").GetString());
        }
        finally
        {
            // The fixture's own instance loads the new key now, as its next key check would, for the tests after this one.
            await server.Factory.Services.GetRequiredService<KeyRing>().RefreshAsync(default);
        }

        static async Task<string> ActiveKeyIdAsync(HttpClient admin) => (await admin.GetFromJsonAsync<JsonElement>("/api/admin/keys")).GetProperty("keys")
            .EnumerateArray().Single(k => k.GetProperty("state").GetString() == "active").GetProperty("kid").GetString()!;
    }

    /// <summary>Cancels <paramref name="source"/> when the server logs <paramref name="eventId"/>.</summary>
    private sealed class CancelOnEvent(EventId eventId, CancellationTokenSource source) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(this);

        private void Saw(EventId logged)
        {
            if (logged.Id == eventId.Id)
            {
                source.Cancel();
            }
        }

        public void Dispose()
        {
        }

        private sealed class Logger(CancelOnEvent provider) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                provider.Saw(eventId);
        }
    }

    /// <summary>Makes <paramref name="aborted"/> the rotate request's RequestAborted, as a client that disconnects cancels it.</summary>
    private sealed class AbortRotationWith(CancellationToken aborted) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use((context, following) =>
            {
                if (context.Request.Path.StartsWithSegments("/api/admin/keys/rotate"))
                {
                    context.RequestAborted = aborted;
                }

                return following(context);
            });
            next(app);
        };
    }

    [SkippableFact]
    public async Task A_token_without_the_admin_scope_can_neither_list_nor_rotate_keys()
    {
        var other = WithBearer(server, await MachineTokenAsync(server, await server.CreateScopeAsync("https://other.test")));
        Assert.Equal(HttpStatusCode.Forbidden, (await other.GetAsync("/api/admin/keys")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await other.PostAsync("/api/admin/keys/rotate", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.CreateClient().GetAsync("/api/admin/keys")).StatusCode);
    }

    [SkippableFact]
    public async Task An_admin_sees_the_keys_page_and_rotates_from_it_and_a_non_admin_cannot_open_it()
    {
        var jwksBefore = await server.PublishedKeyIdsAsync();
        var browser = await AdminPages.SignedInAsync(server, await server.CreateUserAsync(null, "admin"));

        var page = await browser.NavigateAsync(AdminPages.Url("/admin/keys"));
        Assert.Equal(HttpStatusCode.OK, page.Status);
        Assert.All(jwksBefore, kid => Assert.Contains(kid, page.Body));

        var after = await browser.SubmitAsync(page, "form[action*=Rotate], form:has(button.danger)");
        Assert.Equal("/admin/keys", after.Uri.AbsolutePath);
        var jwksAfter = await server.PublishedKeyIdsAsync();
        var added = Assert.Single(jwksAfter.Except(jwksBefore));
        Assert.Contains($"Key {added} signs from now on.", after.Body);

        var user = await AdminPages.SignedInAsync(server, await server.CreateUserAsync());
        Assert.Equal("/account/access-denied", (await user.NavigateAsync(AdminPages.Url("/admin/keys"))).Uri.AbsolutePath);
        Assert.Equal(jwksAfter, await server.PublishedKeyIdsAsync());
    }

    [SkippableFact]
    public async Task Without_a_key_ring_certificate_the_key_list_and_page_say_the_key_ring_is_stored_unencrypted()
    {
        var keyRing = (await (await AdminAsync(server)).GetFromJsonAsync<JsonElement>("/api/admin/keys")).GetProperty("key_ring");
        Assert.False(keyRing.GetProperty("encrypted").GetBoolean());
        Assert.Equal(JsonValueKind.Null, keyRing.GetProperty("certificate_thumbprint").ValueKind);

        var browser = await AdminPages.SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var page = await browser.NavigateAsync(AdminPages.Url("/admin/keys"));
        Assert.Contains("Stored unencrypted in the database", page.Body);
    }

    [SkippableFact]
    public async Task The_key_list_and_page_show_the_internal_keys_with_their_state()
    {
        var listed = (await (await AdminAsync(server)).GetFromJsonAsync<JsonElement>("/api/admin/keys")).GetProperty("internal_keys")
            .EnumerateArray().Where(k => k.GetProperty("state").GetString() == "active")
            .ToDictionary(k => k.GetProperty("use").GetString()!, k => k.GetProperty("kid").GetString()!);
        var keys = server.Factory.Services.GetRequiredService<KeyRing>();

        Assert.Equal(keys.InternalSigningCredentials.Kid, listed["mac"]);
        Assert.Equal(keys.ActiveEncryptionCredentials.Key.KeyId, listed["enc"]);
        var browser = await AdminPages.SignedInAsync(server, await server.CreateUserAsync(null, "admin"));
        var page = await browser.NavigateAsync(AdminPages.Url("/admin/keys"));
        Assert.All(listed.Values, kid => Assert.Contains(kid, page.Body));
    }

    [SkippableFact]
    public async Task An_access_token_signed_with_the_internal_HMAC_key_is_refused_by_the_admin_api_and_introspection()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        var genuine = await TokenAsync(server, client.ClientId, client.ClientSecret!, "admin");
        var forged = SignedWith(genuine, server.Factory.Services.GetRequiredService<KeyRing>().InternalSigningCredentials);

        Assert.Equal(HttpStatusCode.OK, (await WithBearer(server, genuine).GetAsync(ClientsUrl)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await WithBearer(server, forged).GetAsync(ClientsUrl)).StatusCode);
        Assert.True((await OAuth.IntrospectAsync(server, client, genuine)).GetProperty("active").GetBoolean());
        Assert.False((await OAuth.IntrospectAsync(server, client, forged)).GetProperty("active").GetBoolean());
    }

    /// <summary>The same payload and token type, signed with other credentials (their algorithm and key id in the header).</summary>
    private static string SignedWith(string token, SigningCredentials credentials)
    {
        var jwt = new JsonWebToken(token);
        var payload = Encoding.UTF8.GetString(Base64UrlEncoder.DecodeBytes(jwt.EncodedPayload));
        return new JsonWebTokenHandler().CreateToken(payload, credentials, new Dictionary<string, object> { ["typ"] = jwt.Typ });
    }

    [SkippableFact]
    public async Task Tokens_with_malformed_headers_or_unknown_key_ids_are_refused_without_a_server_error()
    {
        var client = await server.CreateConfidentialClientAsync(c => c.Scope = "admin");
        string[] tokens =
        [
            ".", "a.b.c", "!!!.e30.", Header("{") + ".e30.", Header("[]") + ".e30.", Header("{\"kid\":5}") + ".e30.x",
            Header("{\"alg\":\"RS256\",\"kid\":\"nobody\"}") + ".e30.x", Header(new string('[', 600)) + ".e30.",
            Header("{\"alg\":\"RS256\",\"kid\":\"" + new string('k', 2000) + "\"}") + ".e30.x",
            Header("{\"alg\":\"dir\",\"enc\":\"A256CBC-HS512\",\"kid\":\"nobody\"}") + "..x.y.z",
            Header("{\"alg\":\"RS256\",\"kid\":\"\\ud800\"}") + ".e30.x", Header("{\"\\udc00\":1,\"kid\":\"x\"}") + ".e30.x",
            Base64UrlEncoder.Encode([.. "{\"alg\":\"RS256\",\"kid\":\""u8, 0xff, 0xfe, .. "\"}"u8]) + ".e30.x",
        ];

        foreach (var token in tokens)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await WithBearer(server, token).GetAsync(ClientsUrl)).StatusCode);
            Assert.False((await OAuth.IntrospectAsync(server, client, token)).GetProperty("active").GetBoolean());
        }

        static string Header(string json) => Base64UrlEncoder.Encode(json);
    }
}

public sealed class SqliteAdminKeysTests(SqliteServerFixture server) : AdminKeysTests<SqliteServerFixture>(server), IClassFixture<SqliteServerFixture>;

public sealed class PostgreSqlAdminKeysTests(PostgreSqlServerFixture server) : AdminKeysTests<PostgreSqlServerFixture>(server), IClassFixture<PostgreSqlServerFixture>;
