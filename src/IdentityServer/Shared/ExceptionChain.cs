namespace IdentityServer.Shared;

public static class ExceptionChain
{
    /// <summary>The exception and the ones it wraps, outermost first: what a failure is made of, whoever wrapped it.</summary>
    public static IEnumerable<Exception> AndItsCauses(this Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            yield return e;
        }
    }
}
