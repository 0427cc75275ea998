using System.Reflection;
using IdentityServer.Data;
using Microsoft.AspNetCore.Mvc;

namespace IdentityServer.Admin;

/// <summary>
/// The admin API's query parameters: one given more than once (which binds as its values joined by commas: a search for
/// "a,b", a provider named "x,y") is <c>400 invalid_request</c> naming the parameter, as a field given twice in a body
/// is; so is a whole-number one (<see cref="QueryNumber"/>: <c>page</c>, <c>page_size</c>, the audit's <c>limit</c> and
/// <c>before</c>) that is not a whole number, as the README promises, and a text one holding a NUL character.
/// </summary>
public static class QueryParameterChecks
{
    public static EndpointFilterDelegate Refuse(EndpointFilterFactoryContext context, EndpointFilterDelegate next)
    {
        var parameters = context.MethodInfo.GetParameters()
            .Where(parameter => parameter.ParameterType == typeof(string)
                || (Nullable.GetUnderlyingType(parameter.ParameterType) ?? parameter.ParameterType) == typeof(QueryNumber))
            .Select(parameter => (parameter.Position, Name: parameter.GetCustomAttribute<FromQueryAttribute>()?.Name ?? parameter.Name!,
                FromQuery: parameter.IsDefined(typeof(FromQueryAttribute))))
            .ToArray();
        if (parameters.Length == 0)
        {
            return next;
        }

        return invocation =>
        {
            var request = invocation.HttpContext.Request;
            var errors = new List<FieldError>();
            foreach (var (position, name, fromQuery) in parameters)
            {
                if (!fromQuery && request.RouteValues.ContainsKey(name))
                {
                    continue; // a route value ({clientId}), which the query cannot give
                }

                if (request.Query[name].Count > 1)
                {
                    errors.Add(FieldError.Request(name, "given more than once."));
                }
                else if (invocation.Arguments[position] is string text && !DatabaseErrors.CanBeStoredName(text))
                {
                    // PostgreSQL refuses a NUL in a query parameter (a 400 that named nothing there, an empty list on SQLite).
                    errors.Add(FieldError.Request(name, "holds a NUL character, which nothing stored does."));
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
