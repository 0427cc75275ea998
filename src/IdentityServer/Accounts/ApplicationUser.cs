using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>A person who signs in. Identity's user, kept as our own type so accounts can grow fields.</summary>
public sealed class ApplicationUser : IdentityUser
{
    /// <summary>
    /// The length of Identity's user name, email and role name columns: SQLite stores longer text, PostgreSQL and SQL
    /// Server refuse it, so what an admin sends is checked against it first.
    /// </summary>
    public const int NameColumnLength = 256;

    /// <summary>The name the person wants to be called (the <c>name</c> claim); the user name when unset.</summary>
    [MaxLength(200)]
    public string? DisplayName { get; set; }
}
