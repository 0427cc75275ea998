using System.Net;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Hosting;

/// <summary>
/// An address nothing answers is a 404, not the sign-in page that deny-by-default would send it to: a client with a
/// mistyped endpoint learns that, and a person gets the friendly "page not found". Pages that need a signed-in user
/// still send an anonymous one to sign in.
/// </summary>
public sealed class UnknownAddressTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    public static readonly TheoryData<string, string> UnknownAddresses = new()
    {
        { "GET", "/no-such-page" },
        { "GET", "/no-such-file.txt" },
        { "GET", "/health/foo" },
        { "GET", "/account/no-such-page" },
        { "POST", "/no-such-page" },
        { "POST", "/connect/tokens" },
        { "PUT", "/no-such-page" },
        { "DELETE", "/account/no-such-page" },
    };

    [Theory]
    [MemberData(nameof(UnknownAddresses))]
    public async Task A_page_address_nothing_answers_is_the_friendly_not_found_page(string method, string path)
    {
        using var http = server.Factory.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path)
        {
            Content = method is "GET" or "DELETE" ? null : new FormUrlEncodedContent(new Dictionary<string, string> { ["a"] = "b" }),
        });

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Null(response.Headers.Location);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Page not found", await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("GET", "/.well-known/no-such-document")]
    [InlineData("GET", "/api/no-such-resource")]
    [InlineData("DELETE", "/api/clients/no-such-client/no-such-part")]
    public async Task An_api_address_nothing_answers_is_a_404_without_a_page_or_a_redirect(string method, string path)
    {
        using var http = server.Factory.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path)
        {
            Content = method == "POST" ? new FormUrlEncodedContent(new Dictionary<string, string> { ["a"] = "b" }) : null,
        });

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Null(response.Headers.Location);
        Assert.DoesNotContain("<html", await response.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("/account/apps")]
    [InlineData("/admin")]
    public async Task A_page_for_signed_in_users_still_sends_an_anonymous_visitor_to_sign_in(string path)
    {
        using var http = server.Factory.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        using var response = await http.GetAsync(path);

        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal("/account/login", response.Headers.Location?.AbsolutePath ?? response.Headers.Location?.OriginalString.Split('?')[0]);
    }

    [Fact]
    public async Task Protocol_endpoints_answered_by_openiddict_are_not_taken_by_the_fallback()
    {
        using var http = server.Factory.CreateClient(new() { AllowAutoRedirect = false, BaseAddress = TestServerFactory.Authority });

        using var discovery = await http.GetAsync("/.well-known/openid-configuration");
        using var introspection = await http.PostAsync("/connect/introspect",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = "x" }));

        Assert.Equal(HttpStatusCode.OK, discovery.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, introspection.StatusCode);
        Assert.Equal("invalid_client", (await OAuth.ReadJsonAsync(introspection)).GetProperty("error").GetString());
    }
}
