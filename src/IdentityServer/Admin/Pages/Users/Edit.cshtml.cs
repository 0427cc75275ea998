using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Users;

public sealed class EditModel(UserAdmin users, UserSessionAdmin sessions, UserLoginAdmin logins) : AdminPageModel
{
    [BindProperty(SupportsGet = true)]
    public string Id { get; set; } = string.Empty;

    [BindProperty]
    public UserForm Form { get; set; } = new();

    public IReadOnlyList<string> Roles { get; private set; } = [];

    public bool HasPassword { get; private set; }

    public IReadOnlyList<SessionView> Sessions { get; private set; } = [];

    /// <summary>The provider accounts the user signs in with.</summary>
    public IReadOnlyList<UserLoginView> Logins { get; private set; } = [];

    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        var result = await users.GetAsync(Id, ct);
        if (!result.Succeeded)
        {
            return NotFound();
        }

        Form = UserForm.From(result.Value!, result.ETag);
        HasPassword = result.Value!.HasPassword;
        Roles = await users.RoleNamesAsync(ct);
        Sessions = (await sessions.ListAsync(Id, ct)).Value ?? [];
        Logins = (await logins.ListAsync(Id, ct)).Value ?? [];
        return Page();
    }

    /// <summary>Disconnects a provider account from the user; every session of the user ends and its tokens are revoked.</summary>
    public async Task<IActionResult> OnPostRemoveLoginAsync(string? provider, string? accountId, CancellationToken ct)
    {
        var result = await logins.RemoveAsync(Id, provider, accountId, Actor, ct);
        Notice = result.Succeeded ? "The provider account is disconnected; every session of this user has ended." : "That provider account was not connected.";
        return ThisUsersPage();
    }

    /// <summary>Ends one session of the user: that browser is signed out at its next request.</summary>
    public async Task<IActionResult> OnPostEndSessionAsync(string? sessionId, CancellationToken ct)
    {
        var result = await sessions.EndAsync(Id, sessionId ?? string.Empty, Actor, ct);
        Notice = result.Succeeded ? "The session has ended." : "That session had already ended.";
        return ThisUsersPage();
    }

    /// <summary>Ends every session of the user and revokes the user's tokens, as "sign out everywhere" does.</summary>
    public async Task<IActionResult> OnPostEndAllSessionsAsync(CancellationToken ct)
    {
        var result = await sessions.EndAllAsync(Id, Actor, ct);
        if (result.Outcome == AdminOutcome.NotFound)
        {
            return NotFound();
        }

        Notice = "Every session of this user has ended, and their tokens are revoked.";
        return ThisUsersPage();
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        Roles = await users.RoleNamesAsync(ct);
        var current = await users.GetAsync(Id, ct);
        if (!current.Succeeded)
        {
            return NotFound();
        }

        HasPassword = current.Value!.HasPassword;
        Sessions = (await sessions.ListAsync(Id, ct)).Value ?? [];
        Logins = (await logins.ListAsync(Id, ct)).Value ?? [];
        Form.UserName = current.Value.UserName;
        var (document, error) = Form.ToDocument();
        var result = document is null ? AdminResult<UserView>.Invalid([error!]) : await users.UpdateAsync(Id, document, Form.ETag, Actor, ct);
        switch (result.Outcome)
        {
            case AdminOutcome.Ok:
                Notice = "Changes saved.";
                return ThisUsersPage();
            case AdminOutcome.NotFound:
                return NotFound();
            case AdminOutcome.PreconditionFailed:
                FormError = "Someone else changed this user after you opened it (or the user signed in and their record changed). " +
                    "Nothing was saved; your edits are still in the form. Save again to apply them.";
                Form.ETag = result.ETag ?? (await users.GetAsync(Id, ct)).ETag;
                return Page();
            default:
                ShowFailure(result, UserForm.Fields);
                return Page();
        }
    }

    private RedirectResult ThisUsersPage() => Redirect($"~/admin/users/{Uri.EscapeDataString(Id)}");
}
