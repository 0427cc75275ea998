using System.Net;
using System.Text.Json;
using IdentityServer.Accounts;
using IdentityServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace IdentityServer.Tests.Authorization;

/// <summary>
/// The device authorization grant (RFC 8628): a device asks for codes, polls the token endpoint while a user
/// signs in on the verification page and approves (or denies), then gets its tokens.
/// </summary>
public abstract class DeviceFlowTests<TFixture>(TFixture server) where TFixture : ServerFixture
{
    private const string DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";
    private const string ApproveButton = "button[formaction*='Approve']";
    private const string DenyButton = "button[formaction*='Deny']";
    private const string InvalidCodeMessage = "That code is not valid or has expired";

    [SkippableFact]
    public async Task A_device_polls_pending_until_the_user_approves_on_the_complete_verification_uri_then_gets_tokens()
    {
        var client = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid profile offline_access");

        await AssertPollErrorAsync(client, device, "authorization_pending");

        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(device.GetProperty("verification_uri_complete").GetString()!);
        page = await OAuth.SignInAsync(browser, page, user, stopAt: _ => false);
        page = await ApproveOrDenyAsync(browser, page, device, ApproveButton);
        Assert.Contains("Device connected", page.Body);

        var tokens = await PollAsync(client, device);
        Assert.Equal(HttpStatusCode.OK, tokens.Status);
        var json = tokens.Json;
        Assert.Equal("Bearer", json.GetProperty("token_type").GetString());
        Assert.False(string.IsNullOrEmpty(json.GetProperty("refresh_token").GetString()));
        Assert.Equal(user.Id, Jwt.Payload(json.GetProperty("access_token").GetString()!).GetProperty("sub").GetString());
        var idToken = Jwt.Payload(json.GetProperty("id_token").GetString()!);
        Assert.Equal(user.Id, idToken.GetProperty("sub").GetString());
        Assert.Equal(client.ClientId, idToken.GetProperty("aud").GetString());

        // The device code is used up, and presenting it again revokes what it brought (as a replayed code does).
        var again = await PollAsync(client, device);
        Assert.Equal(HttpStatusCode.BadRequest, again.Status);
        Assert.Equal("invalid_grant", again.Json.GetProperty("error").GetString());
        var refreshed = await OAuth.RefreshAsync(server, client, json.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", (await OAuth.ReadJsonAsync(refreshed)).GetProperty("error").GetString());
    }

    /// <summary>
    /// A session ended elsewhere (a password reset, "sign out everywhere": a new security stamp) may still be within
    /// its cookie's check interval; approving a device with it would hand out tokens that outlive the revocation.
    /// </summary>
    [SkippableFact]
    public async Task A_session_whose_security_stamp_changed_cannot_approve_a_device()
    {
        var client = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid offline_access");
        var browser = server.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(device.GetProperty("verification_uri_complete").GetString()!), user,
            stopAt: _ => false);
        Assert.NotNull(page.Document.QuerySelector(ApproveButton));

        await using (var scope = server.Factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<ApplicationUser>>();
            await users.UpdateSecurityStampAsync((await users.FindByIdAsync(user.Id))!);
        }

        page = await browser.SubmitAsync(page, button: ApproveButton);

        Assert.Equal("/account/login", page.Uri.AbsolutePath);
        await AssertPollErrorAsync(client, device, "authorization_pending");
    }

    [SkippableFact]
    public async Task A_user_who_types_the_code_into_the_verification_page_approves_the_device()
    {
        var client = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid offline_access");
        var verificationUri = device.GetProperty("verification_uri").GetString()!;
        Assert.Equal(TestServerFactory.Authority.Host, new Uri(verificationUri).Host);

        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(verificationUri);
        page = await OAuth.SignInAsync(browser, page, user, stopAt: _ => false);
        Assert.Null(page.Document.QuerySelector(ApproveButton));

        page = await browser.SubmitAsync(page, new Dictionary<string, string> { ["user_code"] = device.GetProperty("user_code").GetString()! });
        page = await ApproveOrDenyAsync(browser, page, device, ApproveButton);
        Assert.Contains("Device connected", page.Body);

        var tokens = await PollAsync(client, device);
        Assert.True(tokens.Status == HttpStatusCode.OK, tokens.Json.ToString());
        Assert.True(tokens.Json.TryGetProperty("access_token", out _));
        Assert.True(tokens.Json.TryGetProperty("refresh_token", out _));
        Assert.True(tokens.Json.TryGetProperty("id_token", out _));
    }

    [SkippableFact]
    public async Task A_device_the_user_denies_gets_access_denied()
    {
        var client = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid offline_access");

        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(device.GetProperty("verification_uri_complete").GetString()!);
        var approval = await OAuth.SignInAsync(browser, page, user, stopAt: _ => false);
        page = await ApproveOrDenyAsync(browser, approval, device, DenyButton);
        Assert.Contains("Request denied", page.Body);

        await AssertPollErrorAsync(client, device, "access_denied");

        // Pressing Deny again (the code is no longer waiting) is told so, as Approve is.
        var again = await browser.SubmitAsync(approval, button: DenyButton);
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Contains(InvalidCodeMessage, again.Body);
    }

    /// <summary>
    /// The user code is on the device's screen: opening its link again after the approval (the user reloading, a second
    /// scan of the QR code, anyone who saw it, signed in or not) is told the code is used, and ends nothing: before the
    /// device polled, it still gets its tokens; after, its refresh token still works.
    /// </summary>
    [SkippableFact]
    public async Task Opening_an_approved_user_code_again_shows_it_as_used_and_revokes_nothing()
    {
        var client = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid offline_access");
        var link = device.GetProperty("verification_uri_complete").GetString()!;
        var browser = server.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(link), user, stopAt: _ => false);
        await ApproveOrDenyAsync(browser, page, device, ApproveButton);

        AssertShowsInvalidCode(await browser.NavigateAsync(link));
        var stranger = await server.CreateBrowser().NavigateAsync(link);
        Assert.True((int)stranger.Status < 500, $"{(int)stranger.Status} at {stranger.Uri}");
        var tokens = await PollAsync(client, device);
        Assert.True(tokens.Status == HttpStatusCode.OK, tokens.Json.ToString());

        AssertShowsInvalidCode(await browser.NavigateAsync(link));
        await server.CreateBrowser().NavigateAsync(link);
        var refreshed = await OAuth.RefreshAsync(server, client, tokens.Json.GetProperty("refresh_token").GetString()!);
        Assert.True(refreshed.StatusCode == HttpStatusCode.OK, (await OAuth.ReadJsonAsync(refreshed)).ToString());
    }

    /// <summary>
    /// An external-consent client is for the users an administrator granted it to, in the device flow as at the
    /// authorization endpoint: without that grant the verification page offers Deny only, an Approve posted anyway is
    /// refused, and the device hears access_denied; a user with the grant approves it.
    /// </summary>
    [SkippableFact]
    public async Task An_external_consent_client_is_approved_only_for_a_user_an_administrator_granted_it_to()
    {
        var client = await server.CreateClientAsync(c =>
        {
            c.TokenEndpointAuthMethod = "none";
            c.ApplicationType = "native";
            c.GrantTypes = [DeviceCodeGrant];
            c.Scope = "openid profile";
            c.ConsentType = "external";
        });
        var notGranted = await server.CreateUserAsync();
        var granted = await server.CreateUserAsync();
        await server.GrantAsAdministratorAsync(client, granted, "openid", "profile");

        var refusedDevice = await RequestCodesAsync(client, "openid profile");
        var browser = server.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(refusedDevice.GetProperty("verification_uri_complete").GetString()!),
            notGranted, stopAt: _ => false);
        Assert.Null(page.Document.QuerySelector(ApproveButton));
        Assert.Contains("An administrator must give", page.Body);
        // The Deny button made into an Approve, as a forged form would post.
        var deny = page.Document.QuerySelector(DenyButton) ?? throw new InvalidOperationException($"No Deny button at {page.Uri}:\n{page.Body}");
        deny.SetAttribute("formaction", deny.GetAttribute("formaction")!.Replace("Deny", "Approve", StringComparison.Ordinal));
        var forged = await browser.SubmitAsync(page, button: ApproveButton);
        Assert.Equal("/connect/verify/done", forged.Uri.AbsolutePath);
        Assert.Contains("Request denied", forged.Body);
        await AssertPollErrorAsync(client, refusedDevice, "access_denied");

        var approvedDevice = await RequestCodesAsync(client, "openid profile");
        var grantedBrowser = server.CreateBrowser();
        page = await OAuth.SignInAsync(grantedBrowser, await grantedBrowser.NavigateAsync(approvedDevice.GetProperty("verification_uri_complete").GetString()!),
            granted, stopAt: _ => false);
        await ApproveOrDenyAsync(grantedBrowser, page, approvedDevice, ApproveButton);
        var tokens = await PollAsync(client, approvedDevice);
        Assert.True(tokens.Status == HttpStatusCode.OK, tokens.Json.ToString());
    }

    [SkippableFact]
    public async Task A_device_code_cannot_be_redeemed_by_another_client()
    {
        var client = await CreateDeviceClientAsync();
        var other = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid");

        // While it is pending too (RFC 6749 5.2), and such a poll is not the device's: its own next poll is not too soon.
        await AssertPollErrorAsync(other, device, "invalid_grant");
        await AssertPollErrorAsync(client, device, "authorization_pending");

        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(device.GetProperty("verification_uri_complete").GetString()!);
        page = await OAuth.SignInAsync(browser, page, user, stopAt: _ => false);
        await ApproveOrDenyAsync(browser, page, device, ApproveButton);

        var stolen = await PollAsync(other, device);
        Assert.Equal(HttpStatusCode.BadRequest, stolen.Status);
        Assert.Equal("invalid_grant", stolen.Json.GetProperty("error").GetString());
        var tokens = await PollAsync(client, device);
        Assert.True(tokens.Status == HttpStatusCode.OK, tokens.Json.ToString());
    }

    /// <summary>
    /// RFC 8628 3.5: a pending device code polled again sooner than the interval (5 seconds) after its last poll is
    /// answered slow_down, the too-early poll counting as a poll, with half a second allowed for the network's jitter;
    /// once approved, the device gets its tokens however soon it asks. On a server of its own with a test clock.
    /// </summary>
    [SkippableFact]
    public async Task A_device_polling_sooner_than_the_interval_is_told_to_slow_down()
    {
        Skip.If(server.UnavailableReason is not null, server.UnavailableReason);
        var clock = new IdentityServer.Tests.Keys.TestClock(DateTimeOffset.UtcNow);
        await using var factory = server.StartServer(testServices: services => services.AddSingleton<TimeProvider>(clock));
        var paced = new AttachedServer(factory, server.Provider);
        var client = await CreateDeviceClientAsync(paced);
        var device = await RequestCodesAsync(client, "openid", paced);

        await AssertPollErrorAsync(client, device, "authorization_pending", paced);
        await AssertPollErrorAsync(client, device, "slow_down", paced);
        clock.Advance(TimeSpan.FromSeconds(4));
        await AssertPollErrorAsync(client, device, "slow_down", paced);
        clock.Advance(TimeSpan.FromSeconds(4.6));
        await AssertPollErrorAsync(client, device, "authorization_pending", paced);

        var browser = paced.CreateBrowser();
        var page = await OAuth.SignInAsync(browser, await browser.NavigateAsync(device.GetProperty("verification_uri_complete").GetString()!),
            await paced.CreateUserAsync(), stopAt: _ => false);
        await ApproveOrDenyAsync(browser, page, device, ApproveButton);
        var tokens = await PollAsync(client, device, paced);
        Assert.True(tokens.Status == HttpStatusCode.OK, tokens.Json.ToString());
    }

    [SkippableFact]
    public async Task An_unknown_user_code_shows_an_error_on_the_verification_page()
    {
        var client = await CreateDeviceClientAsync();
        var user = await server.CreateUserAsync();
        var device = await RequestCodesAsync(client, "openid");
        var verificationUri = device.GetProperty("verification_uri").GetString()!;

        var browser = server.CreateBrowser();
        var page = await browser.NavigateAsync(verificationUri);
        page = await OAuth.SignInAsync(browser, page, user, stopAt: _ => false);

        // Typed into the form.
        page = await browser.SubmitAsync(page, new Dictionary<string, string> { ["user_code"] = "0000-0000-0000" });
        AssertShowsInvalidCode(page);

        // In the link.
        page = await browser.NavigateAsync($"{verificationUri}?user_code=NOT-A-CODE");
        AssertShowsInvalidCode(page);

        // Posted to the approval handler, as a forged form would.
        var valid = await browser.NavigateAsync(device.GetProperty("verification_uri_complete").GetString()!);
        page = await browser.SubmitAsync(valid, new Dictionary<string, string> { ["user_code"] = "9999-9999-9999" }, ApproveButton);
        AssertShowsInvalidCode(page);

        // The real device is still waiting: nothing was approved.
        await AssertPollErrorAsync(client, device, "authorization_pending");
    }

    /// <summary>As at the authorization and token endpoints: a resource (RFC 8707) is refused, not accepted and then ignored.</summary>
    [SkippableTheory]
    [InlineData("x", "invalid_request")]
    [InlineData("/relative", "invalid_request")]
    [InlineData("https://api.test/#fragment", "invalid_request")]
    [InlineData("https://api.test/", "invalid_target")]
    public async Task A_device_authorization_request_naming_a_resource_is_refused_as_the_token_endpoint_refuses_it(string resource, string error)
    {
        var client = await CreateDeviceClientAsync();

        var response = await server.CreateClient().PostAsync(await server.EndpointAsync("device_authorization_endpoint"),
            new FormUrlEncodedContent(new Dictionary<string, string> { ["client_id"] = client.ClientId, ["scope"] = "openid", ["resource"] = resource }));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(error, (await OAuth.ReadJsonAsync(response)).GetProperty("error").GetString());
    }

    private static void AssertShowsInvalidCode(BrowserPage page)
    {
        Assert.True((int)page.Status < 500, $"{(int)page.Status} at {page.Uri}:\n{page.Body}");
        Assert.Equal("/connect/verify", page.Uri.AbsolutePath);
        Assert.Contains(InvalidCodeMessage, page.Body);
        Assert.Null(page.Document.QuerySelector(ApproveButton));
    }

    private Task<TestClient> CreateDeviceClientAsync(ServerFixture? at = null) => (at ?? server).CreateClientAsync(c =>
    {
        c.TokenEndpointAuthMethod = "none";
        c.ApplicationType = "native";
        c.GrantTypes = [DeviceCodeGrant, "refresh_token"];
        c.Scope = "openid profile offline_access";
    });

    private async Task<JsonElement> RequestCodesAsync(TestClient client, string scope, ServerFixture? at = null)
    {
        at ??= server;
        var response = await at.CreateClient().PostAsync(await at.EndpointAsync("device_authorization_endpoint"),
            new FormUrlEncodedContent(new Dictionary<string, string> { ["client_id"] = client.ClientId, ["scope"] = scope }));
        var json = await OAuth.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
        foreach (var name in new[] { "device_code", "user_code", "verification_uri", "verification_uri_complete" })
        {
            Assert.False(string.IsNullOrEmpty(json.GetProperty(name).GetString()), $"{name} missing: {json}");
        }

        Assert.True(json.GetProperty("expires_in").GetInt32() > 0);
        Assert.Equal(5, json.GetProperty("interval").GetInt32()); // Tokens:DevicePollingInterval
        Assert.Contains(Uri.EscapeDataString(json.GetProperty("user_code").GetString()!), json.GetProperty("verification_uri_complete").GetString());
        return json;
    }

    /// <summary>On the approval page for this device's code, presses Allow or Deny; returns the page it ends on.</summary>
    private static async Task<BrowserPage> ApproveOrDenyAsync(Browser browser, BrowserPage page, JsonElement device, string button)
    {
        Assert.True(page.Document.QuerySelector(button) is not null, $"No approval form at {page.Uri}:\n{page.Body}");
        Assert.Equal(device.GetProperty("user_code").GetString(), page.Document.QuerySelector("input[name=user_code]")?.GetAttribute("value"));
        page = await browser.SubmitAsync(page, button: button);
        Assert.Equal("/connect/verify/done", page.Uri.AbsolutePath);
        return page;
    }

    private async Task<(HttpStatusCode Status, JsonElement Json)> PollAsync(TestClient client, JsonElement device, ServerFixture? at = null)
    {
        var response = await OAuth.PostTokenAsync(at ?? server, new Dictionary<string, string>
        {
            ["grant_type"] = DeviceCodeGrant,
            ["client_id"] = client.ClientId,
            ["device_code"] = device.GetProperty("device_code").GetString()!,
        });
        return (response.StatusCode, await OAuth.ReadJsonAsync(response));
    }

    private async Task AssertPollErrorAsync(TestClient client, JsonElement device, string error, ServerFixture? at = null)
    {
        var (status, json) = await PollAsync(client, device, at);
        Assert.True(status == HttpStatusCode.BadRequest && json.GetProperty("error").GetString() == error, $"Expected {error}, got {(int)status}: {json}");
    }
}

/// <summary>
/// Every test of the class checks user codes from one address (the in-memory server has none): more than the per-IP
/// limit allows a real address in a minute (RateLimitingTests covers that limit).
/// </summary>
public static class DeviceFlowSettings
{
    public static void Apply(ServerFixture fixture) => fixture.Settings["RateLimiting:UserCodesPerIp:PermitLimit"] = "1000";
}

public sealed class DeviceFlowSqliteFixture : SqliteServerFixture
{
    public DeviceFlowSqliteFixture() => DeviceFlowSettings.Apply(this);
}

public sealed class DeviceFlowPostgreSqlFixture : PostgreSqlServerFixture
{
    public DeviceFlowPostgreSqlFixture() => DeviceFlowSettings.Apply(this);
}

public sealed class SqliteDeviceFlowTests(DeviceFlowSqliteFixture server) : DeviceFlowTests<DeviceFlowSqliteFixture>(server), IClassFixture<DeviceFlowSqliteFixture>;

public sealed class PostgreSqlDeviceFlowTests(DeviceFlowPostgreSqlFixture server) : DeviceFlowTests<DeviceFlowPostgreSqlFixture>(server), IClassFixture<DeviceFlowPostgreSqlFixture>;
