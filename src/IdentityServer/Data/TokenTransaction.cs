using IdentityServer.Performance;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Data;

/// <summary>
/// Makes the token endpoint's writes one database transaction, committed before the answer is written.
/// OpenIddict redeems the presented code or refresh token, then creates the new token entries, each in its own
/// SaveChanges: a crash between the two would leave the client's refresh token redeemed with no successor ever
/// delivered (its retry then counts as reuse and revokes the whole chain), or a code redeemed with no tokens.
/// With the transaction a crash before the commit leaves the grant as it was, and whatever the client received
/// (committed first) is stored.
/// </summary>
public static class TokenTransaction
{
    public static OpenIddictServerBuilder UseTokenTransactions(this OpenIddictServerBuilder server) => server
        .AddEventHandler(Begin.Descriptor)
        .AddEventHandler(Commit.Descriptor);

    /// <summary>Before the presented grant is redeemed (and after the request and client were validated).</summary>
    public sealed class Begin(ApplicationDbContext db, IServiceProvider services) : IOpenIddictServerHandler<ProcessSignInContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ProcessSignInContext>()
            .UseScopedHandler<Begin>()
            .SetOrder(OpenIddictServerHandlers.RedeemTokenEntry.Descriptor.Order - 500)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ProcessSignInContext context)
        {
            // Only grants that redeem something (a code, a refresh token, a device code) need the two writes to
            // commit together; client credentials write one new entry and stay off the transaction (and so can be
            // group-committed with other requests' entries).
            if (context.EndpointType == OpenIddictServerEndpointType.Token && db.Database.CurrentTransaction is null
                && context.Request is { } request && (request.IsAuthorizationCodeGrantType() || request.IsRefreshTokenGrantType() || request.IsDeviceCodeGrantType()))
            {
                if (services.GetService<SqliteWriteGate>() is { } gate)
                {
                    await gate.EnterBeforeTransactionAsync(db, context.CancellationToken);
                }

                // On SQLite this is BEGIN IMMEDIATE: the write lock is taken now, so the transaction cannot fail
                // later on a snapshot another writer has moved past.
                await db.Database.BeginTransactionAsync(context.CancellationToken);

                // OpenIddict saves each step (the redemption, each new token) with its own SaveChanges; inside a
                // transaction EF Core would wrap each in a savepoint, two more statements apiece, only to let the
                // transaction go on after a failed step. Here a failed step fails the request and rolls back.
                db.Database.AutoSavepointsEnabled = false;
            }
        }
    }

    /// <summary>
    /// Before the response (tokens or an error) is written. Without a commit (an exception on the way) the
    /// transaction is rolled back when the request's DbContext is disposed.
    /// </summary>
    public sealed class Commit(ApplicationDbContext db) : IOpenIddictServerHandler<ApplyTokenResponseContext>
    {
        public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<ApplyTokenResponseContext>()
            .UseScopedHandler<Commit>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<ApplyTokenResponseContext>.Descriptor.Order - 1000)
            .SetType(OpenIddictServerHandlerType.Custom)
            .Build();

        public async ValueTask HandleAsync(ApplyTokenResponseContext context)
        {
            if (db.Database.CurrentTransaction is { } transaction)
            {
                // The new token entries were added to the context as they were created; they are written here.
                await db.SaveChangesAsync(context.CancellationToken);
                await transaction.CommitAsync(context.CancellationToken);
            }
        }
    }
}
