namespace IdentityServer.Tests.Infrastructure;

/// <summary>Waits for a condition to hold, polling, up to a limit: for what has no event to wait on.</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<Task<bool>> condition, TimeSpan limit, string what)
    {
        using var deadline = new CancellationTokenSource(limit);
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not answering yet: try again.
            }

            if (deadline.IsCancellationRequested)
            {
                Assert.Fail($"Waited {limit} for {what}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200), CancellationToken.None);
        }
    }
}
