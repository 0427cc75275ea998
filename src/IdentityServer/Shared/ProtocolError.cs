namespace IdentityServer.Shared;

/// <summary>An OAuth error that cannot be sent back to the client (unknown client, unregistered redirect_uri), shown to the person instead.</summary>
public sealed record ProtocolError(string Error, string? Description, string RequestId);
