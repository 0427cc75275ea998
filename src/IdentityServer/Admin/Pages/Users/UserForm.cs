using System.Globalization;

namespace IdentityServer.Admin.Pages.Users;

public sealed class UserForm
{
    public string? UserName { get; set; }

    public string? Email { get; set; }

    public bool EmailVerified { get; set; }

    public List<string>? Roles { get; set; }

    /// <summary>UTC, as an HTML datetime-local value (yyyy-MM-ddTHH:mm); empty for not locked out.</summary>
    public string? LockoutEnd { get; set; }

    /// <summary>On creation only; empty for a user without a password.</summary>
    public string? Password { get; set; }

    public string? ETag { get; set; }

    public static readonly IReadOnlyDictionary<string, string> Fields = new Dictionary<string, string>
    {
        ["user_name"] = nameof(UserName),
        ["email"] = nameof(Email),
        ["email_verified"] = nameof(EmailVerified),
        ["roles"] = nameof(Roles),
        ["lockout_end"] = nameof(LockoutEnd),
        ["password"] = nameof(Password),
    };

    public static UserForm From(UserView user, string? etag) => new()
    {
        UserName = user.UserName,
        Email = user.Email,
        EmailVerified = user.EmailVerified,
        Roles = [.. user.Roles],
        LockoutEnd = user.LockoutEnd?.UtcDateTime.ToString("yyyy-MM-ddTHH:mm", CultureInfo.InvariantCulture),
        ETag = etag,
    };

    public (UserDocument? Document, FieldError? Error) ToDocument()
    {
        DateTimeOffset? lockoutEnd = null;
        if (!string.IsNullOrWhiteSpace(LockoutEnd))
        {
            if (!DateTime.TryParse(LockoutEnd, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var end))
            {
                return (null, FieldError.Request("lockout_end", "is not a date and time (yyyy-mm-dd hh:mm, UTC)."));
            }

            lockoutEnd = new DateTimeOffset(DateTime.SpecifyKind(end, DateTimeKind.Utc));
        }

        return (new UserDocument
        {
            UserName = UserName?.Trim(),
            Email = Email,
            EmailVerified = EmailVerified,
            Roles = [.. (Roles ?? []).Distinct()],
            LockoutEnd = lockoutEnd,
            Password = string.IsNullOrEmpty(Password) ? null : Password,
        }, null);
    }
}
