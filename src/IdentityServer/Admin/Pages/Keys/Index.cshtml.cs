using IdentityServer.Keys;
using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin.Pages.Keys;

/// <summary>The signing keys with their state, and rotate-now (for emergencies such as a suspected leak).</summary>
public sealed class IndexModel(KeyRing ring, KeyRingCertificate keyRing) : AdminPageModel
{
    public KeysAdminExtensions.KeyRingDocument KeyRing { get; } = KeysAdminExtensions.KeyRingDocument.From(keyRing);

    public IReadOnlyList<KeysAdminExtensions.KeyDocument> Keys { get; private set; } = [];

    public IReadOnlyList<KeysAdminExtensions.InternalKeyDocument> InternalKeys { get; private set; } = [];

    public bool Rotates => ring.Rotates;

    public void OnGet()
    {
        Keys = [.. ring.Describe().Select(KeysAdminExtensions.KeyDocument.From)];
        InternalKeys = [.. ring.DescribeInternal().Select(KeysAdminExtensions.InternalKeyDocument.From)];
    }

    public async Task<IActionResult> OnPostRotateAsync(CancellationToken ct)
    {
        var active = await KeysAdminExtensions.RotateNowAsync(ring, Actor, ct);
        if (active is null)
        {
            FormError = KeysAdminExtensions.NotRotatable;
            OnGet();
            return Page();
        }

        Notice = $"Key {active.KeyId} signs from now on.";
        return Redirect("~/admin/keys");
    }
}
