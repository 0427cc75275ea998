using AngleSharp.Html.Dom;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Admin;

/// <summary>
/// Using the admin pages as a person does: sign in on the login page, then fill in and submit real forms,
/// every field as the browser would send it (checked boxes, selected options, text areas, the antiforgery token).
/// </summary>
public static class AdminPages
{
    public static string Url(string path) => new Uri(TestServerFactory.Authority, path).AbsoluteUri;

    public static async Task<Browser> SignedInAsync(ServerFixture server, TestUser user)
    {
        var browser = server.CreateBrowser();
        var login = await browser.NavigateAsync(Url("/account/login"));
        var home = await OAuth.SignInAsync(browser, login, user, stopAt: _ => false);
        Assert.Equal("/", home.Uri.AbsolutePath);
        return browser;
    }

    /// <summary>
    /// Submits the form matching <paramref name="selector"/> with its current values, replacing the values of the
    /// names in <paramref name="set"/> (several values for a checkbox group; none to clear it).
    /// </summary>
    public static Task<BrowserPage> SubmitAsync(this Browser browser, BrowserPage page, string selector, IDictionary<string, string[]>? set = null)
    {
        var form = page.Document.QuerySelector(selector) as IHtmlFormElement
            ?? throw new InvalidOperationException($"No form '{selector}' on {page.Uri}:\n{page.Body}");
        var fields = Fields(form);
        foreach (var (name, values) in set ?? new Dictionary<string, string[]>())
        {
            fields.RemoveAll(f => f.Key == name);
            fields.AddRange(values.Select(v => KeyValuePair.Create(name, v)));
        }

        var action = form.GetAttribute("action");
        var target = new Uri(page.Uri, string.IsNullOrEmpty(action) ? page.Uri.PathAndQuery : action);
        return browser.PostFormAsync(target.AbsoluteUri, fields);
    }

    /// <summary>What a browser sends for a form: named inputs (checkboxes and radios only when checked), text areas, selected options.</summary>
    public static List<KeyValuePair<string, string>> Fields(IHtmlFormElement form)
    {
        var fields = new List<KeyValuePair<string, string>>();
        foreach (var element in form.QuerySelectorAll("input, textarea, select"))
        {
            switch (element)
            {
                case IHtmlInputElement input when !string.IsNullOrEmpty(input.Name) && input.Type is not ("submit" or "button"):
                    if (input.Type is not ("checkbox" or "radio") || input.IsChecked)
                    {
                        fields.Add(KeyValuePair.Create(input.Name, input.Value));
                    }

                    break;
                case IHtmlTextAreaElement area when !string.IsNullOrEmpty(area.Name):
                    fields.Add(KeyValuePair.Create(area.Name, area.Value));
                    break;
                case IHtmlSelectElement select when !string.IsNullOrEmpty(select.Name):
                    var option = select.Options.FirstOrDefault(o => o.IsSelected) ?? select.Options.FirstOrDefault();
                    if (option is not null)
                    {
                        fields.Add(KeyValuePair.Create(select.Name, option.Value));
                    }

                    break;
            }
        }

        return fields;
    }

    /// <summary>The field errors shown on a page.</summary>
    public static string[] FieldErrors(BrowserPage page) =>
        [.. page.Document.QuerySelectorAll(".field-error").Select(e => e.TextContent.Trim()).Where(t => t.Length > 0)];
}
