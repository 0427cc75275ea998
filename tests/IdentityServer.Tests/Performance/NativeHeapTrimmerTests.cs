using System.Globalization;
using System.Runtime.InteropServices;
using IdentityServer.Tests.Infrastructure;

namespace IdentityServer.Tests.Performance;

/// <summary>
/// glibc keeps the pages of freed C heap memory that lies below a block still in use; the server hands them back to
/// the operating system every <c>Performance:NativeHeapTrimInterval</c>. The test frees 32 MB of small blocks under
/// one it keeps, then waits for the mapping that holds them to shrink. The test process hosts the server, so the
/// server's trimmer works on the test's own heap.
/// </summary>
public sealed class NativeHeapTrimmerTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    // 32 MB: one of glibc's 64 MB thread-arena heaps holds them all, and the block kept after them.
    private const int Blocks = 32_768;
    private const int BlockSize = 1024;

    [SkippableFact]
    public async Task Freed_native_memory_goes_back_to_the_operating_system()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && File.Exists("/proc/self/smaps"), "malloc_trim is glibc's (Linux).");
        // Another test's server in this process may trim the heap (its own trimmer) between the free and the reading:
        // then the blocks are made and freed again.
        var kept = FreeBlocksUnderAKeptOne();
        var before = ResidentKilobytesOfMappingHolding(kept);
        for (var attempt = 1; attempt < 5 && before <= 24 * 1024; attempt++)
        {
            Marshal.FreeHGlobal(kept);
            kept = FreeBlocksUnderAKeptOne();
            before = ResidentKilobytesOfMappingHolding(kept);
        }

        try
        {
            Assert.True(before > 24 * 1024, $"The freed blocks should still be resident before a trim: {before} kB.");

            await using var trimming = server.StartServer(new Dictionary<string, string?>
            {
                ["Performance:NativeHeapTrimInterval"] = "00:00:00.100",
            });
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            long now;
            // Three quarters of the freed 32 MB must go: the mapping may also hold what other tests' threads keep.
            const long mustGo = Blocks * (long)BlockSize / 1024 * 3 / 4;
            while ((now = ResidentKilobytesOfMappingHolding(kept)) > before - mustGo)
            {
                Assert.False(timeout.IsCancellationRequested, $"Still {now} kB resident of {before} kB after 30 s ({mustGo} kB should have gone).");
                await Task.Delay(50, CancellationToken.None);
            }
        }
        finally
        {
            Marshal.FreeHGlobal(kept);
        }
    }

    /// <summary>On a thread of its own (so in one arena): 32 MB of small blocks, one block after them, then the 32 MB freed.</summary>
    private static nint FreeBlocksUnderAKeptOne()
    {
        nint kept = 0;
        var thread = new Thread(() =>
        {
            var blocks = new nint[Blocks];
            for (var i = 0; i < Blocks; i++)
            {
                blocks[i] = Marshal.AllocHGlobal(BlockSize);
                // Touch every page, so that the blocks are resident.
                Marshal.WriteByte(blocks[i], 1);
                Marshal.WriteByte(blocks[i], BlockSize - 1, 1);
            }

            kept = Marshal.AllocHGlobal(BlockSize);
            foreach (var block in blocks)
            {
                Marshal.FreeHGlobal(block);
            }
        });
        thread.Start();
        thread.Join();
        return kept;
    }

    /// <summary>The resident size, in kB, of the memory mapping that contains <paramref name="address"/>.</summary>
    private static long ResidentKilobytesOfMappingHolding(nint address)
    {
        var inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var dash = line.IndexOf('-');
            var space = line.IndexOf(' ');
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, null, out var start)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, null, out var end))
            {
                inside = (ulong)address >= start && (ulong)address < end;
            }
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"No mapping holds 0x{address:x}.");
    }
}
