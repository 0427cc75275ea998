using Microsoft.AspNetCore.Identity;

namespace IdentityServer.Accounts;

/// <summary>A person who signs in. Identity's user, kept as our own type so accounts can grow fields.</summary>
public sealed class ApplicationUser : IdentityUser;
