using System.Net;
using AngleSharp.Html.Dom;
using AngleSharp.Html.Parser;

namespace IdentityServer.Tests.Infrastructure;

/// <summary>
/// A minimal browser over in-memory hosts: keeps cookies, follows redirects on request, reads and submits HTML
/// forms (antiforgery token included, as a person's browser would send it). Each host name maps to a server.
/// </summary>
public sealed class Browser(Dictionary<string, HttpMessageHandler> hosts)
{
    private readonly Dictionary<string, HttpMessageInvoker> _invokers = new(StringComparer.OrdinalIgnoreCase);

    public CookieContainer Cookies { get; } = new();

    /// <summary>Sent as the User-Agent header of every request, when set.</summary>
    public string? UserAgent { get; set; }

    /// <summary>Maps <paramref name="host"/> to a server, replacing any earlier one (e.g. after a restart); cookies are kept.</summary>
    public void AddHost(string host, HttpMessageHandler handler)
    {
        hosts[host] = handler;
        if (_invokers.Remove(host, out var previous))
        {
            previous.Dispose();
        }
    }

    public async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request)
    {
        var uri = request.RequestUri!;
        if (!_invokers.TryGetValue(uri.Host, out var invoker))
        {
            invoker = _invokers[uri.Host] = new HttpMessageInvoker(hosts[uri.Host], disposeHandler: false);
        }

        if (UserAgent is not null)
        {
            request.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
        }

        var cookies = Cookies.GetCookieHeader(uri);
        if (!string.IsNullOrEmpty(cookies))
        {
            request.Headers.Add("Cookie", cookies);
        }

        var response = await invoker.SendAsync(request, CancellationToken.None);
        if (response.Headers.TryGetValues("Set-Cookie", out var setCookies))
        {
            foreach (var header in setCookies)
            {
                Cookies.SetCookies(uri, header);
            }
        }

        return response;
    }

    /// <summary>
    /// Opens <paramref name="url"/> and follows redirects, stopping before any redirect whose target satisfies
    /// <paramref name="stopAt"/> (e.g. the client's redirect URI) so the test can read it.
    /// </summary>
    public Task<BrowserPage> NavigateAsync(string url, Func<Uri, bool>? stopAt = null) =>
        FollowAsync(new HttpRequestMessage(HttpMethod.Get, url), stopAt);

    public Task<BrowserPage> PostFormAsync(string url, IEnumerable<KeyValuePair<string, string>> fields, Func<Uri, bool>? stopAt = null) =>
        FollowAsync(new HttpRequestMessage(HttpMethod.Post, url) { Content = new FormUrlEncodedContent(fields) }, stopAt);

    /// <summary>
    /// Submits a form of <paramref name="page"/> (the first, or the first matching <paramref name="selector"/>):
    /// its fields as rendered, overridden by <paramref name="values"/>, plus the pressed button's name and value.
    /// </summary>
    public Task<BrowserPage> SubmitAsync(BrowserPage page, IDictionary<string, string>? values = null, string? button = null,
        string selector = "form", Func<Uri, bool>? stopAt = null)
    {
        var form = page.Document.QuerySelector(selector) as IHtmlFormElement
            ?? throw new InvalidOperationException($"No form '{selector}' on {page.Uri}:\n{page.Body}");
        var fields = new List<KeyValuePair<string, string>>();
        foreach (var input in form.QuerySelectorAll("input").OfType<IHtmlInputElement>())
        {
            if (!string.IsNullOrEmpty(input.Name) && input.Type is not "submit" and not "checkbox")
            {
                fields.Add(KeyValuePair.Create(input.Name, input.Value));
            }
        }

        foreach (var (name, value) in values ?? new Dictionary<string, string>())
        {
            fields.RemoveAll(f => f.Key == name);
            fields.Add(KeyValuePair.Create(name, value));
        }

        var target = new Uri(page.Uri, string.IsNullOrEmpty(form.GetAttribute("action")) ? page.Uri.PathAndQuery : form.GetAttribute("action")!);
        if (button is not null)
        {
            var pressed = form.QuerySelector(button) ?? throw new InvalidOperationException($"No button '{button}' on {page.Uri}.");
            if (pressed.GetAttribute("name") is { } name)
            {
                fields.Add(KeyValuePair.Create(name, pressed.GetAttribute("value") ?? string.Empty));
            }

            if (pressed.GetAttribute("formaction") is { } formAction)
            {
                target = new Uri(page.Uri, formAction);
            }
        }

        var method = (form.GetAttribute("method") ?? "get").Equals("post", StringComparison.OrdinalIgnoreCase) ? HttpMethod.Post : HttpMethod.Get;
        var request = method == HttpMethod.Post
            ? new HttpRequestMessage(HttpMethod.Post, target) { Content = new FormUrlEncodedContent(fields) }
            : new HttpRequestMessage(HttpMethod.Get, new UriBuilder(target) { Query = new FormUrlEncodedContent(fields).ReadAsStringAsync().Result }.Uri);
        return FollowAsync(request, stopAt);
    }

    private async Task<BrowserPage> FollowAsync(HttpRequestMessage request, Func<Uri, bool>? stopAt)
    {
        for (var hops = 0; hops < 20; hops++)
        {
            var uri = request.RequestUri!;
            var response = await SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            if ((int)response.StatusCode is not (301 or 302 or 303 or 307 or 308) || response.Headers.Location is null)
            {
                return new BrowserPage(uri, response, body);
            }

            var next = new Uri(uri, response.Headers.Location);
            if (stopAt?.Invoke(next) == true || !hosts.ContainsKey(next.Host))
            {
                return new BrowserPage(uri, response, body);
            }

            request = new HttpRequestMessage(HttpMethod.Get, next);
        }

        throw new InvalidOperationException("Too many redirects.");
    }
}

/// <summary>What the browser shows after a navigation: the last address, the response and its HTML.</summary>
public sealed class BrowserPage(Uri uri, HttpResponseMessage response, string body)
{
    private IHtmlDocument? _document;

    public Uri Uri { get; } = uri;

    public HttpResponseMessage Response { get; } = response;

    public string Body { get; } = body;

    public HttpStatusCode Status => Response.StatusCode;

    /// <summary>Where a redirect that the browser stopped at points.</summary>
    public Uri? RedirectTarget => Response.Headers.Location is { } location ? new Uri(Uri, location) : null;

    public IHtmlDocument Document => _document ??= new HtmlParser().ParseDocument(Body);
}
