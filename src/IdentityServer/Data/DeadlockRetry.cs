namespace IdentityServer.Data;

/// <summary>
/// Runs database work again when the database aborted it to break a deadlock (<see cref="DatabaseErrors.IsDeadlock"/>).
/// Nothing of the aborted attempt was kept, and the next attempt normally goes through. PostgreSQL and SQL Server
/// lock rows, so a change that takes many rows (revoking a user's tokens) can meet token writes in flight that took
/// some of them in another order; SQLite runs one writer at a time and never deadlocks.
/// </summary>
public static class DeadlockRetry
{
    /// <summary>How many times the work is tried in all.</summary>
    public const int Attempts = 3;

    /// <param name="what">What the work is, for the log.</param>
    /// <param name="beforeRetry">Forgets what the aborted attempt left in memory (say, a context's tracked entities).</param>
    public static async Task<T> RunAsync<T>(Func<Task<T>> work, ILogger logger, string what, Action? beforeRetry = null)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await work();
            }
            catch (Exception e) when (attempt < Attempts && DatabaseErrors.IsDeadlock(e))
            {
                logger.LogWarning(DataEvents.DeadlockRetried, e, "{What} was aborted by the database to break a deadlock; trying again ({Attempt} of {Attempts})",
                    what, attempt + 1, Attempts);
                beforeRetry?.Invoke();
            }
        }
    }
}
