using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace IdentityServer.Authorization.Pages;

[AllowAnonymous]
public sealed class SignedOutModel : PageModel
{
    public const string Path = "/account/signed-out";

    public void OnGet()
    {
    }
}
