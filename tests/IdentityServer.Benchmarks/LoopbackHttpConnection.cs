using System.Buffers.Text;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace IdentityServer.Benchmarks;

/// <summary>One HTTP/1.1 response as read by <see cref="LoopbackHttpConnection"/>; its body is valid until the next request.</summary>
public readonly record struct LoopbackHttpResponse(int Status, string? Location, ReadOnlyMemory<byte> Body)
{
    public string BodyText => Encoding.UTF8.GetString(Body.Span);
}

/// <summary>
/// The load generator's HTTP client: one keep-alive HTTP/1.1 connection over loopback that sends prebuilt request
/// bytes and reads one response at a time, the way wrk does, which is what the reference numbers were
/// measured with. <c>HttpClient</c> cost the generator about 0.04 ms of CPU per token request on the two cores it
/// shares with the server; this reads the status, the Location header and the body (Content-Length or chunked) and
/// nothing else. It reconnects after the server closes a connection.
/// </summary>
public sealed class LoopbackHttpConnection(EndPoint server) : IDisposable
{
    private Socket? _socket;
    private byte[] _buffer = new byte[16 * 1024];
    private byte[] _chunked = [];
    private int _start;
    private int _end;

    /// <summary>Sends one request (from <see cref="LoopbackRequest"/>) and reads its response.</summary>
    public async ValueTask<LoopbackHttpResponse> SendAsync(ReadOnlyMemory<byte> request, CancellationToken ct)
    {
        try
        {
            var socket = await ConnectedAsync(ct);
            while (!request.IsEmpty)
            {
                request = request[await socket.SendAsync(request, SocketFlags.None, ct)..];
            }

            return await ReadResponseAsync(socket, ct);
        }
        catch
        {
            // Whatever went wrong, the connection's state is unknown: the next request starts on a new one.
            Close();
            throw;
        }
    }

    public void Dispose() => Close();

    private async ValueTask<Socket> ConnectedAsync(CancellationToken ct)
    {
        if (_socket is { } open)
        {
            return open;
        }

        var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(server, ct);
        _start = _end = 0;
        return _socket = socket;
    }

    private void Close()
    {
        _socket?.Dispose();
        _socket = null;
    }

    private async ValueTask<LoopbackHttpResponse> ReadResponseAsync(Socket socket, CancellationToken ct)
    {
        int headersEnd;
        while ((headersEnd = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8)) < 0)
        {
            await ReceiveAsync(socket, ct);
        }

        var (status, location, contentLength, chunked, close) = ParseHeaders(_buffer.AsSpan(_start, headersEnd));
        _start += headersEnd + 4;
        ReadOnlyMemory<byte> body;
        if (chunked)
        {
            body = await ReadChunkedAsync(socket, ct);
        }
        else
        {
            while (_end - _start < contentLength)
            {
                await ReceiveAsync(socket, ct);
            }

            body = _buffer.AsMemory(_start, contentLength);
            _start += contentLength;
        }

        if (close)
        {
            Close();
        }

        return new LoopbackHttpResponse(status, location, body);
    }

    private async ValueTask<ReadOnlyMemory<byte>> ReadChunkedAsync(Socket socket, CancellationToken ct)
    {
        var length = 0;
        while (true)
        {
            int lineEnd;
            while ((lineEnd = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n"u8)) < 0)
            {
                await ReceiveAsync(socket, ct);
            }

            var sizeText = _buffer.AsSpan(_start, lineEnd);
            var extension = sizeText.IndexOf((byte)';');
            if (!Utf8Parser.TryParse(extension < 0 ? sizeText : sizeText[..extension], out int size, out _, 'x'))
            {
                throw new IOException("A chunk of the response had no readable size.");
            }

            _start += lineEnd + 2;
            // The chunk, then its CRLF (after the last, empty chunk: the CRLF that ends the trailers, none here).
            while (_end - _start < size + 2)
            {
                await ReceiveAsync(socket, ct);
            }

            if (size == 0)
            {
                _start += 2;
                return _chunked.AsMemory(0, length);
            }

            if (_chunked.Length < length + size)
            {
                Array.Resize(ref _chunked, Math.Max(_chunked.Length * 2, length + size));
            }

            _buffer.AsSpan(_start, size).CopyTo(_chunked.AsSpan(length));
            length += size;
            _start += size + 2;
        }
    }

    /// <summary>Reads what the socket has into the buffer, after moving unread bytes to its front or growing it.</summary>
    private async ValueTask ReceiveAsync(Socket socket, CancellationToken ct)
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }

        var read = await socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, ct);
        if (read == 0)
        {
            throw new IOException("The server closed the connection before the whole response.");
        }

        _end += read;
    }

    private static (int Status, string? Location, int ContentLength, bool Chunked, bool Close) ParseHeaders(ReadOnlySpan<byte> headers)
    {
        // "HTTP/1.1 200 OK"
        if (headers.Length < 12 || !headers.StartsWith("HTTP/1.1 "u8) || !Utf8Parser.TryParse(headers.Slice(9, 3), out int status, out _))
        {
            throw new IOException($"Not an HTTP/1.1 status line: {Encoding.ASCII.GetString(headers[..Math.Min(headers.Length, 40)])}");
        }

        string? location = null;
        var contentLength = 0;
        var chunked = false;
        var close = false;
        foreach (var range in headers.Split("\r\n"u8))
        {
            var line = headers[range];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                continue;
            }

            var name = line[..colon];
            var value = line[(colon + 1)..].Trim((byte)' ');
            if (Ascii.EqualsIgnoreCase(name, "Content-Length"u8))
            {
                Utf8Parser.TryParse(value, out contentLength, out _);
            }
            else if (Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8))
            {
                chunked = Ascii.EqualsIgnoreCase(value, "chunked"u8);
            }
            else if (Ascii.EqualsIgnoreCase(name, "Location"u8))
            {
                location = Encoding.ASCII.GetString(value);
            }
            else if (Ascii.EqualsIgnoreCase(name, "Connection"u8))
            {
                close = Ascii.EqualsIgnoreCase(value, "close"u8);
            }
        }

        return (status, location, contentLength, chunked, close);
    }
}

/// <summary>Builds the bytes of one HTTP/1.1 request for <see cref="LoopbackHttpConnection"/>.</summary>
public static class LoopbackRequest
{
    /// <summary>
    /// A GET, or a form POST when <paramref name="form"/> is given. Every request says <c>X-Forwarded-Proto: https</c>,
    /// since the server runs as it would behind a TLS-terminating proxy.
    /// </summary>
    public static byte[] Build(Uri server, string method, string pathAndQuery, string? form = null, params (string Name, string Value)[] headers)
    {
        var text = new StringBuilder()
            .Append(method).Append(" /").Append(pathAndQuery.TrimStart('/')).Append(" HTTP/1.1\r\n")
            .Append("Host: ").Append(server.Authority).Append("\r\n")
            .Append("X-Forwarded-Proto: https\r\n");
        foreach (var (name, value) in headers)
        {
            text.Append(name).Append(": ").Append(value).Append("\r\n");
        }

        if (form is not null)
        {
            text.Append("Content-Type: application/x-www-form-urlencoded\r\n")
                .Append("Content-Length: ").Append(Encoding.ASCII.GetByteCount(form)).Append("\r\n");
        }

        return Encoding.ASCII.GetBytes(text.Append("\r\n").Append(form).ToString());
    }
}
