using IdentityServer.Clients;
using IdentityServer.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace IdentityServer.Admin;

/// <summary>A stored client as the admin API shows it: its document (never its secret) and its entity tag.</summary>
public sealed record ClientEntry(ClientDocument Document, string ETag);

/// <summary>A client just created or given a new secret: the secret is shown this once, if the server generated it.</summary>
public sealed record ClientWithSecret(ClientEntry Client, string? Secret);

/// <summary>
/// Managing client applications: the same rules (<see cref="ClientDocumentValidator"/>) and mapping
/// (<see cref="ClientDescriptorMapper"/>) as the seed, with optimistic concurrency, audit, and the CORS origins
/// refreshed after every change.
/// </summary>
public sealed class ClientAdmin(
    ApplicationDbContext db,
    IOpenIddictApplicationManager applications,
    AuditLog audit,
    ClientOrigins origins,
    Authorization.ServerAudience serverAudience)
{
    public async Task<PageOf<ClientEntry>> ListAsync(string? search, int? page, int? pageSize, CancellationToken ct)
    {
        var (number, size) = PageOf<ClientEntry>.Normalize(page, pageSize);
        var query = db.Set<OpenIddictEntityFrameworkCoreApplication>().AsNoTracking();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim().ToLowerInvariant();
            query = query.Where(a => a.ClientId!.ToLower().Contains(term) || (a.DisplayName != null && a.DisplayName.ToLower().Contains(term)));
        }

        var (found, total) = await query.OrderBy(a => a.ClientId).PageAsync(number, size, ct);
        var items = new List<ClientEntry>(found.Count);
        foreach (var application in found)
        {
            items.Add(await EntryAsync(application, ct));
        }

        return new PageOf<ClientEntry>(items, total, number, size);
    }

    public async Task<AdminResult<ClientEntry>> GetAsync(string clientId, CancellationToken ct) =>
        await FindAsync(clientId, ct) is { } application
            ? AdminResult<ClientEntry>.Ok(await EntryAsync(application, ct), ETagOf(application))
            : NotFound<ClientEntry>(clientId);

    /// <summary>Whether a scope may be named in a client's <c>scope</c>: a standard one or a stored one.</summary>
    public async Task<Func<string, bool>> KnownScopesAsync(CancellationToken ct)
    {
        var names = new HashSet<string>(Seeder.StandardScopes, StringComparer.Ordinal);
        names.UnionWith(await db.Set<OpenIddictEntityFrameworkCoreScope>().AsNoTracking().Select(s => s.Name!).ToListAsync(ct));
        return names.Contains;
    }

    public async Task<IReadOnlyList<FieldError>> ValidateAsync(ClientDocument document, CancellationToken ct) =>
        ClientDocumentValidator.Validate(document, await KnownScopesAsync(ct), secretRequired: false, serverAudience.IsThisServer)
            .Select(e => new FieldError(e.Error, e.Field, e.Description)).ToList();

    /// <param name="properties">Stored with the client beside what its document says (a registration's access token hash).</param>
    public async Task<AdminResult<ClientWithSecret>> CreateAsync(ClientDocument document, AdminActor actor, CancellationToken ct,
        IReadOnlyDictionary<string, System.Text.Json.JsonElement>? properties = null)
    {
        var errors = await ValidateAsync(document, ct);
        if (errors.Count > 0)
        {
            return AdminResult<ClientWithSecret>.Invalid(errors);
        }

        string? generated = null;
        if (NeedsSecret(document) && string.IsNullOrEmpty(document.ClientSecret))
        {
            document.ClientSecret = generated = ClientSecrets.Generate();
        }

        await using var transaction = await audit.BeginAsync(ct);
        if (await applications.FindByClientIdAsync(document.ClientId!, ct) is not null)
        {
            return Duplicate(document.ClientId!);
        }

        var descriptor = new OpenIddictApplicationDescriptor();
        ClientDescriptorMapper.Populate(descriptor, document);
        foreach (var (name, value) in properties ?? new Dictionary<string, System.Text.Json.JsonElement>())
        {
            descriptor.Properties[name] = value;
        }

        object application;
        try
        {
            application = await applications.CreateAsync(descriptor, ct);
        }
        catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e))
        {
            // Another request registered the same client_id between our check and our insert.
            return Duplicate(document.ClientId!);
        }
        catch (OpenIddictExceptions.ValidationException e)
        {
            return RefusedByOpenIddict<ClientWithSecret>(e);
        }

        var entry = await EntryAsync(application, ct);
        audit.Record(actor, AuditAction.ClientCreated, entry.Document.ClientId!, before: null, after: entry.Document);
        await audit.CommitAsync(transaction, ct);
        origins.Invalidate();
        return AdminResult<ClientWithSecret>.Created(new ClientWithSecret(entry, generated), entry.ETag);
    }

    /// <summary>
    /// Replaces a client with <paramref name="document"/>. Without a <c>client_secret</c> a confidential client keeps
    /// its secret; one that had none (it was public, or used private_key_jwt) gets a generated one, returned once.
    /// </summary>
    public async Task<AdminResult<ClientWithSecret>> ReplaceAsync(string clientId, ClientDocument document, string? ifMatch, AdminActor actor,
        CancellationToken ct)
    {
        if (document.ClientId is not null && document.ClientId != clientId)
        {
            return AdminResult<ClientWithSecret>.Invalid([new(ClientDocumentError.InvalidClientMetadata, "client_id",
                "cannot be changed; register a new client instead.")]);
        }

        document.ClientId = clientId;
        await using var transaction = await audit.BeginAsync(ct);
        var application = await LockAsync(clientId, RowLockPurpose.Change, ct);
        if (application is null)
        {
            return NotFound<ClientWithSecret>(clientId);
        }

        if (!ETags.Matches(ifMatch, TokenOf(application)))
        {
            return AdminResult<ClientWithSecret>.Stale(ETagOf(application));
        }

        var errors = await ValidateAsync(document, ct);
        if (errors.Count > 0)
        {
            return AdminResult<ClientWithSecret>.Invalid(errors);
        }

        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, application, ct);
        var before = ClientDescriptorMapper.ToDocument(descriptor);
        ClientDescriptorMapper.Populate(descriptor, document);
        string? generated = null;
        if (NeedsSecret(document) && string.IsNullOrEmpty(descriptor.ClientSecret))
        {
            descriptor.ClientSecret = generated = ClientSecrets.Generate();
        }

        try
        {
            await applications.UpdateAsync(application, descriptor, ct);
        }
        catch (OpenIddictExceptions.ConcurrencyException)
        {
            return ChangedMeanwhile<ClientWithSecret>(ifMatch);
        }
        catch (OpenIddictExceptions.ValidationException e)
        {
            return RefusedByOpenIddict<ClientWithSecret>(e);
        }

        var entry = await EntryAsync(application, ct);
        audit.Record(actor, AuditAction.ClientUpdated, clientId, before, entry.Document);
        await audit.CommitAsync(transaction, ct);
        origins.Invalidate();
        return AdminResult<ClientWithSecret>.Ok(new ClientWithSecret(entry, generated), entry.ETag);
    }

    /// <summary>
    /// Deletes a client, with every token and authorization issued to it; run again if the database aborts it to break
    /// a deadlock with token writes in flight for the client.
    /// </summary>
    public Task<AdminResult<ClientEntry>> DeleteAsync(string clientId, string? ifMatch, AdminActor actor, CancellationToken ct) =>
        audit.InTransactionAsync(transaction => DeleteAsync(transaction, clientId, ifMatch, actor, ct), ct,
            // The manager keeps this request's copies of the clients it found (Performance): a retry reads afresh.
            forgetReads: () => (applications as Performance.CachingApplicationManager)?.ForgetThisRequest());

    private async Task<AdminResult<ClientEntry>> DeleteAsync(IDbContextTransaction transaction, string clientId, string? ifMatch, AdminActor actor,
        CancellationToken ct)
    {
        // Locked first: a token entry written for the client after its entries were listed, but before the client's
        // row went, would make the deletion fail on its foreign key (PostgreSQL, SQL Server). Locked, the client's new
        // entries wait for the deletion, then fail as written for a deleted client.
        var application = await LockAsync(clientId, RowLockPurpose.Delete, ct);
        if (application is null)
        {
            return NotFound<ClientEntry>(clientId);
        }

        if (!ETags.Matches(ifMatch, TokenOf(application)))
        {
            return AdminResult<ClientEntry>.Stale(ETagOf(application));
        }

        var entry = await EntryAsync(application, ct);
        await LockedRows.HoldAgainstNewReferencesAsync(db, application, ct);
        try
        {
            await applications.DeleteAsync(application, ct);
        }
        catch (OpenIddictExceptions.ConcurrencyException)
        {
            return ChangedMeanwhile<ClientEntry>(ifMatch);
        }

        // A client registered later under the same id must not be told about this one's sessions (back-channel logout).
        await db.Set<Logout.UserSessionClient>().Where(c => c.ClientId == clientId).ExecuteDeleteAsync(ct);
        audit.Record(actor, AuditAction.ClientDeleted, clientId, entry.Document, after: null);
        await audit.CommitAsync(transaction, ct);
        origins.Invalidate();
        return AdminResult<ClientEntry>.Ok(entry);
    }

    /// <summary>Gives a confidential client a new generated secret, returned once; the old one stops working at once.</summary>
    public async Task<AdminResult<ClientWithSecret>> RotateSecretAsync(string clientId, string? ifMatch, AdminActor actor, CancellationToken ct)
    {
        await using var transaction = await audit.BeginAsync(ct);
        var application = await LockAsync(clientId, RowLockPurpose.Change, ct);
        if (application is null)
        {
            return NotFound<ClientWithSecret>(clientId);
        }

        if (!ETags.Matches(ifMatch, TokenOf(application)))
        {
            return AdminResult<ClientWithSecret>.Stale(ETagOf(application));
        }

        var current = await EntryAsync(application, ct);
        if (!NeedsSecret(current.Document))
        {
            return AdminResult<ClientWithSecret>.Conflict(new FieldError(ClientDocumentError.InvalidClientMetadata, "token_endpoint_auth_method",
                $"a client with token_endpoint_auth_method '{current.Document.TokenEndpointAuthMethod}' has no secret to rotate."));
        }

        var secret = ClientSecrets.Generate();
        try
        {
            await applications.UpdateAsync(application, secret, ct);
        }
        catch (OpenIddictExceptions.ConcurrencyException)
        {
            return ChangedMeanwhile<ClientWithSecret>(ifMatch);
        }

        var entry = await EntryAsync(application, ct);
        audit.Record(actor, AuditAction.ClientSecretRotated, clientId, current.Document, entry.Document);
        await audit.CommitAsync(transaction, ct);
        return AdminResult<ClientWithSecret>.Ok(new ClientWithSecret(entry, secret), entry.ETag);
    }

    /// <summary>
    /// OpenIddict validates a client once more when it is stored, with a few rules of its own (no <c>iss</c> parameter
    /// in a redirect URI, a signing key in a <c>private_key_jwt</c> key set): what it refuses is the caller's error.
    /// </summary>
    private static AdminResult<T> RefusedByOpenIddict<T>(OpenIddictExceptions.ValidationException exception) =>
        AdminResult<T>.Invalid([.. exception.Results.Select(result =>
            new FieldError("invalid_client_metadata", string.Join(",", result.MemberNames), result.ErrorMessage ?? exception.Message))]);

    private static bool NeedsSecret(ClientDocument document) =>
        (document.TokenEndpointAuthMethod ?? ClientAuthenticationMethods.ClientSecretBasic)
            is ClientAuthenticationMethods.ClientSecretBasic or ClientAuthenticationMethods.ClientSecretPost;

    private async Task<object?> FindAsync(string clientId, CancellationToken ct) =>
        string.IsNullOrEmpty(clientId) ? null : await applications.FindByClientIdAsync(clientId, ct);

    /// <summary>The client as stored now, locked until the change's transaction ends (<see cref="LockedRows"/>).</summary>
    private async Task<OpenIddictEntityFrameworkCoreApplication?> LockAsync(string clientId, RowLockPurpose purpose, CancellationToken ct) =>
        await LockedRows.ReadAsync<OpenIddictEntityFrameworkCoreApplication>(db, nameof(OpenIddictEntityFrameworkCoreApplication.ClientId), clientId, purpose, ct);

    /// <summary>
    /// The client changed between the locked read and the write, which the lock rules out for every change made here:
    /// only a condition the request sent is answered 412 (RFC 9110 section 15.5.13); without one, a conflict to retry.
    /// </summary>
    private static AdminResult<T> ChangedMeanwhile<T>(string? ifMatch) => ifMatch is not null
        ? AdminResult<T>.Stale(null)
        : AdminResult<T>.Conflict("client_id", "the client was changed by another request at the same moment; try again.");

    private async Task<ClientEntry> EntryAsync(object application, CancellationToken ct)
    {
        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, application, ct);
        return new ClientEntry(ClientDescriptorMapper.ToDocument(descriptor), ETagOf(application)!);
    }

    private static string? TokenOf(object application) => ((OpenIddictEntityFrameworkCoreApplication)application).ConcurrencyToken;

    private static string? ETagOf(object application) => ETags.Format(TokenOf(application));

    private static AdminResult<T> NotFound<T>(string clientId) => AdminResult<T>.NotFound($"There is no client '{clientId}'.");

    private static AdminResult<ClientWithSecret> Duplicate(string clientId) =>
        AdminResult<ClientWithSecret>.Conflict(new FieldError(ClientDocumentError.InvalidClientMetadata, "client_id",
            $"'{clientId}' is already registered."));
}
