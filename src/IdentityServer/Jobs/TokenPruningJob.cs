using Quartz;

namespace IdentityServer.Jobs;

/// <summary>
/// The scheduled pruning run. Not concurrent within an instance; across instances, concurrent runs are safe
/// because pruning is a set of bulk deletes by criteria: a row already deleted by one instance is simply not
/// found by the other.
/// </summary>
[DisallowConcurrentExecution]
public sealed class TokenPruningJob(TokenPruner pruner, ILogger<TokenPruningJob> logger) : IJob
{
    public static readonly JobKey Key = new("token-pruning");

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken)
    {
        try
        {
            await pruner.PruneAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The next scheduled run tries again; a failed run must not take the scheduler down.
            logger.LogError(JobEvents.PruningFailed, e, "Token pruning failed");
        }
    }
}
