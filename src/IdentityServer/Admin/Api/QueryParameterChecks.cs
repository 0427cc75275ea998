using System.Reflection;
using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin;

/// <summary>
/// The admin API's whole-number query parameters (<see cref="QueryNumber"/>: <c>page</c>, <c>page_size</c>, the audit's
/// <c>limit</c> and <c>before</c>): one that is not a whole number, or is given more than once (bound as its values
/// joined by commas), is <c>400 invalid_request</c> naming the parameter, as the README promises.
/// </summary>
public static class QueryParameterChecks
{
    public static EndpointFilterDelegate Refuse(EndpointFilterFactoryContext context, EndpointFilterDelegate next)
    {
        var numbers = context.MethodInfo.GetParameters()
            .Where(parameter => (Nullable.GetUnderlyingType(parameter.ParameterType) ?? parameter.ParameterType) == typeof(QueryNumber))
            .Select(parameter => (parameter.Position, Name: parameter.GetCustomAttribute<FromQueryAttribute>()?.Name ?? parameter.Name!))
            .ToArray();
        if (numbers.Length == 0)
        {
            return next;
        }

        return invocation =>
        {
            var errors = new List<FieldError>();
            foreach (var (position, name) in numbers)
            {
                if (invocation.HttpContext.Request.Query[name].Count > 1)
                {
                    errors.Add(FieldError.Request(name, "given more than once."));
                }
                else if (invocation.Arguments[position] is QueryNumber { IsWholeNumber: false })
                {
                    errors.Add(FieldError.Request(name, "not a whole number."));
                }
            }

            return errors.Count == 0
                ? next(invocation)
                : ValueTask.FromResult<object?>(AdminResults.Error(StatusCodes.Status400BadRequest, FieldError.InvalidRequest,
                    string.Join(" ", errors), errors));
        };
    }
}
