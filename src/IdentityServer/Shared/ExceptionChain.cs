namespace IdentityServer.Shared;

public static class ExceptionChain
{
    /// <summary>
    /// The exception and the ones it wraps, outermost first: what a failure is made of, whoever wrapped it. An
    /// <see cref="AggregateException"/> (OpenIddict's pruning gathers one failure per batch) wraps each of its inner
    /// exceptions.
    /// </summary>
    public static IEnumerable<Exception> AndItsCauses(this Exception? exception)
    {
        if (exception is null)
        {
            yield break;
        }

        yield return exception;
        IEnumerable<Exception?> causes = exception is AggregateException aggregate ? aggregate.InnerExceptions : new[] { exception.InnerException };
        foreach (var e in causes.SelectMany(cause => cause.AndItsCauses()))
        {
            yield return e;
        }
    }
}
