using System.Buffers;
using System.Buffers.Text;
using System.Text.Json;

namespace IdentityServer.Keys;

/// <summary>The key id (<c>kid</c>) in the header of a JWT or JWE, read without parsing the rest of the token.</summary>
public static class TokenKeyId
{
    /// <summary>Headers longer than this are not ours; nothing is read from them.</summary>
    private const int MaxHeaderLength = 1024;

    /// <summary>The header's <c>kid</c>, or null for anything else (an opaque reference, a malformed header, no key id).</summary>
    public static string? Of(string token)
    {
        var end = token.IndexOf('.');
        if (end <= 0 || end > MaxHeaderLength)
        {
            return null;
        }

        var encoded = token.AsSpan(0, end);
        var header = ArrayPool<byte>.Shared.Rent(Base64Url.GetMaxDecodedLength(encoded.Length));
        try
        {
            if (Base64Url.DecodeFromChars(encoded, header, out _, out var written) != OperationStatus.Done)
            {
                return null;
            }

            var reader = new Utf8JsonReader(header.AsSpan(0, written));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isKeyId = reader.ValueTextEquals("kid"u8);
                if (!reader.Read())
                {
                    return null;
                }

                if (isKeyId)
                {
                    return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                }

                reader.Skip();
            }

            return null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Malformed JSON, or an escape that does not unescape (a lone surrogate) or invalid UTF-8 in a string.
            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
    }
}
