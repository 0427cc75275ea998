namespace IdentityServer.Admin;

/// <summary>The names the admin API and pages are built on.</summary>
public static class AdminApi
{
    /// <summary>The scope a machine client needs in its access token to call the admin API.</summary>
    public const string Scope = "admin";

    /// <summary>The role a person needs to use the admin pages (and the admin API with their session cookie).</summary>
    public const string Role = "admin";

    /// <summary>
    /// The resource of the <see cref="Scope"/> scope, hence the <c>aud</c> of every access token granted it; the admin
    /// API accepts only access tokens issued by this server for this audience.
    /// </summary>
    public const string Audience = "urn:identity-server:admin";

    public const string RoutePrefix = "/api/admin";
    public const string PagesPrefix = "/admin";

    /// <summary>The OpenAPI document of the admin API.</summary>
    public const string OpenApiDocumentName = "admin";
    public const string OpenApiRoute = "/api/admin/openapi/{documentName}.json";
    public const string OpenApiPath = "/api/admin/openapi/admin.json";

    public const string ApiPolicy = "AdminApi";
    public const string PagesPolicy = "AdminPages";

    /// <summary>Picks bearer validation or the session cookie per request, and answers challenges the bearer way.</summary>
    public const string ApiScheme = "AdminApi";
}

/// <summary>Admin changes, logged with these stable event ids (and written to the audit table).</summary>
public static class AdminEvents
{
    public static readonly EventId ClientCreated = new(6001, nameof(ClientCreated));
    public static readonly EventId ClientUpdated = new(6002, nameof(ClientUpdated));
    public static readonly EventId ClientDeleted = new(6003, nameof(ClientDeleted));
    public static readonly EventId ClientSecretRotated = new(6004, nameof(ClientSecretRotated));
    public static readonly EventId ScopeCreated = new(6011, nameof(ScopeCreated));
    public static readonly EventId ScopeUpdated = new(6012, nameof(ScopeUpdated));
    public static readonly EventId ScopeDeleted = new(6013, nameof(ScopeDeleted));
    public static readonly EventId UserCreated = new(6021, nameof(UserCreated));
    public static readonly EventId UserUpdated = new(6022, nameof(UserUpdated));
    public static readonly EventId UserDeleted = new(6023, nameof(UserDeleted));
    public static readonly EventId UserPasswordReset = new(6024, nameof(UserPasswordReset));
    public static readonly EventId UserSessionEnded = new(6025, nameof(UserSessionEnded));
    public static readonly EventId UserSessionsEnded = new(6026, nameof(UserSessionsEnded));
    public static readonly EventId UserLoginRemoved = new(6027, nameof(UserLoginRemoved));
    public static readonly EventId RoleCreated = new(6031, nameof(RoleCreated));
    public static readonly EventId RoleDeleted = new(6032, nameof(RoleDeleted));
    public static readonly EventId BuiltInCreated = new(6040, nameof(BuiltInCreated));
    public static readonly EventId AccessRefused = new(6050, nameof(AccessRefused));
}
