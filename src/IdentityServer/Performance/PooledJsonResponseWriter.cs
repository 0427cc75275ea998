using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore;
using Microsoft.Extensions.Options;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlerFilters;
using static OpenIddict.Server.AspNetCore.OpenIddictServerAspNetCoreHandlers;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace IdentityServer.Performance;

/// <summary>
/// OpenIddict's JSON response writer (<see cref="ProcessJsonResponse{TContext}"/>) for the token and introspection
/// endpoints, with the same bytes, headers and log line, written into a buffer rented from the shared pool instead
/// of a new <see cref="MemoryStream"/> that grows as the document is written: those growing buffers were 5-8% of
/// the bytes a client credentials token or an introspection allocates.
/// </summary>
public sealed class PooledJsonResponseWriter<TContext>(IOptionsMonitor<OpenIddictServerAspNetCoreOptions> options)
    : IOpenIddictServerHandler<TContext> where TContext : BaseRequestContext
{
    public static OpenIddictServerHandlerDescriptor Descriptor { get; } = OpenIddictServerHandlerDescriptor.CreateBuilder<TContext>()
        .AddFilter<RequireHttpRequest>()
        .UseSingletonHandler<PooledJsonResponseWriter<TContext>>()
        .SetOrder(ProcessJsonResponse<TContext>.Descriptor.Order)
        .SetType(OpenIddictServerHandlerType.Custom)
        .Build();

    public async ValueTask HandleAsync(TContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var response = context.Transaction.GetHttpRequest()?.HttpContext.Response
            ?? throw new InvalidOperationException("The ASP.NET Core HTTP request cannot be resolved.");
        var message = context.Transaction.Response ?? throw new InvalidOperationException("There is no response to write.");
        context.Logger.LogInformation(6142, "The response was successfully returned as a JSON document: {Response}.", message);

        using var buffer = new RentedBufferWriter();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions
        {
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            Indented = !options.CurrentValue.SuppressJsonResponseIndentation,
        }))
        {
            message.WriteTo(writer);
        }

        response.ContentLength = buffer.WrittenCount;
        response.ContentType = "application/json;charset=UTF-8";
        await response.Body.WriteAsync(buffer.WrittenMemory, context.CancellationToken);
        context.HandleRequest();
    }

    /// <summary>An <see cref="IBufferWriter{T}"/> over arrays rented from <see cref="ArrayPool{T}.Shared"/>, returned on dispose.</summary>
    private sealed class RentedBufferWriter : IBufferWriter<byte>, IDisposable
    {
        private byte[] _array = ArrayPool<byte>.Shared.Rent(4096);

        public int WrittenCount { get; private set; }

        public ReadOnlyMemory<byte> WrittenMemory => _array.AsMemory(0, WrittenCount);

        public void Advance(int count) => WrittenCount += count;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint); // may replace _array, so it is read after
            return _array.AsMemory(WrittenCount);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _array.AsSpan(WrittenCount);
        }

        public void Dispose() => Return(_array);

        /// <summary>Makes room for at least <paramref name="sizeHint"/> (or one) more bytes.</summary>
        private void Reserve(int sizeHint)
        {
            var needed = WrittenCount + Math.Max(sizeHint, 1);
            if (needed > _array.Length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, _array.Length * 2));
                _array.AsSpan(0, WrittenCount).CopyTo(larger);
                Return(_array);
                _array = larger;
            }
        }

        /// <summary>The written bytes hold tokens, so they are wiped before the array goes back to the shared pool.</summary>
        private void Return(byte[] array)
        {
            array.AsSpan(0, Math.Min(WrittenCount, array.Length)).Clear();
            ArrayPool<byte>.Shared.Return(array);
        }
    }
}
