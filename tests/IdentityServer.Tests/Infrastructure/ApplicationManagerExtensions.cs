using OpenIddict.Abstractions;

namespace IdentityServer.Tests.Infrastructure;

public static class ApplicationManagerExtensions
{
    /// <summary>Gives a stored client a new secret straight through OpenIddict's manager, as a rotation does.</summary>
    public static async Task SetClientSecretAsync(this IOpenIddictApplicationManager applications, string clientId, string secret)
    {
        var application = await applications.FindByClientIdAsync(clientId)
            ?? throw new InvalidOperationException($"There is no client '{clientId}'.");
        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, application);
        descriptor.ClientSecret = secret;
        await applications.UpdateAsync(application, descriptor);
    }
}
