using Microsoft.AspNetCore.Html;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.ModelBinding;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.AspNetCore.Mvc.ViewFeatures;

namespace IdentityServer.Admin.Pages;

/// <summary>What every admin page shares: the actor for the audit log, field errors, and a one-time notice.</summary>
[ResponseCache(Duration = 0, Location = ResponseCacheLocation.None, NoStore = true)]
public abstract class AdminPageModel : PageModel
{
    public const string NoticeKey = "AdminNotice";

    /// <summary>A message for the next page (after a redirect), shown once by the admin layout.</summary>
    [TempData(Key = NoticeKey)]
    public string? Notice { get; set; }

    /// <summary>A problem with the whole form (not one field), shown above it.</summary>
    public string? FormError { get; set; }

    protected AdminActor Actor => AdminAccess.ActorOf(HttpContext);

    /// <summary>Puts each error next to its form field (by the API field name), or above the form if it names none.</summary>
    protected void AddErrors(IEnumerable<FieldError> errors, IReadOnlyDictionary<string, string> fields, string prefix = "Form")
    {
        foreach (var error in errors)
        {
            // redirect_uris[1] and jwks.keys[0] belong to the redirect_uris and jwks fields.
            var field = error.Field.Split('[', '.')[0];
            if (fields.TryGetValue(field, out var property))
            {
                ModelState.AddModelError(prefix.Length == 0 ? property : $"{prefix}.{property}", error.Field != field ? $"{error.Field}: {error.Description}" : error.Description);
            }
            else
            {
                ModelState.AddModelError(string.Empty, error.ToString());
            }
        }
    }

    /// <summary>An admin operation's failure as page state: field errors, or a message for the whole form.</summary>
    protected void ShowFailure<T>(AdminResult<T> result, IReadOnlyDictionary<string, string> fields)
    {
        if (result.Outcome is AdminOutcome.Invalid or AdminOutcome.Conflict)
        {
            AddErrors(result.Errors, fields);
        }
        else
        {
            FormError = string.Join(" ", result.Errors.Select(e => e.Description));
        }
    }
}

/// <summary>Small view helpers for the admin pages.</summary>
public static class AdminHtml
{
    /// <summary>Every error of a field (the validation tag helper shows only the first).</summary>
    public static IHtmlContent FieldErrors(ModelStateDictionary state, string key)
    {
        if (!state.TryGetValue(key, out var entry) || entry.Errors.Count == 0)
        {
            return HtmlString.Empty;
        }

        var html = new HtmlContentBuilder();
        foreach (var error in entry.Errors)
        {
            html.AppendHtml("<span class=\"field-error\">").Append(error.ErrorMessage).AppendHtml("</span>");
        }

        return html;
    }

    public static IHtmlContent FormErrors(ModelStateDictionary state, string? formError)
    {
        var messages = (state.TryGetValue(string.Empty, out var entry) ? entry.Errors.Select(e => e.ErrorMessage) : [])
            .Concat(formError is null ? [] : [formError]).ToList();
        if (messages.Count == 0)
        {
            return HtmlString.Empty;
        }

        var html = new HtmlContentBuilder().AppendHtml("<div class=\"error\" role=\"alert\">");
        foreach (var message in messages)
        {
            html.AppendHtml("<p>").Append(message).AppendHtml("</p>");
        }

        return html.AppendHtml("</div>");
    }

    public static string Lines(IEnumerable<string> values) => string.Join("\n", values);

    public static List<string> SplitLines(string? text) =>
        [.. (text ?? string.Empty).Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)];
}
