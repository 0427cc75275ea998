using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Options;

namespace IdentityServer.Shared;

/// <summary>
/// Checks a settings class's data annotations (and <see cref="IValidatableObject"/>) as <c>ValidateDataAnnotations</c>
/// does, and also those of its nested settings (<c>Email:Smtp</c>, <c>Accounts:Lockout</c>, <c>RateLimiting:PerIp</c>),
/// which that skips, so an out-of-range SMTP port started the server. Each failure names the setting by its
/// configuration key and value (<c>Email:Smtp:Port = 99999: ...</c>) instead of the class and property.
/// </summary>
public static class SettingsValidation
{
    public static OptionsBuilder<T> ValidateSettings<T>(this OptionsBuilder<T> builder, string section) where T : class
    {
        builder.Services.AddSingleton<IValidateOptions<T>>(new SettingsValidator<T>(builder.Name, section));
        return builder;
    }

    private sealed class SettingsValidator<T>(string? name, string section) : IValidateOptions<T> where T : class
    {
        public ValidateOptionsResult Validate(string? optionsName, T options)
        {
            if (name is not null && name != optionsName)
            {
                return ValidateOptionsResult.Skip;
            }

            var failures = new List<string>();
            Collect(options, section, failures);
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    private static void Collect(object settings, string key, List<string> failures)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(settings, new ValidationContext(settings), results, validateAllProperties: true);
        foreach (var result in results)
        {
            var property = result.MemberNames.FirstOrDefault() is { } member ? settings.GetType().GetProperty(member) : null;
            failures.Add(property is null
                ? $"{key}: {result.ErrorMessage}"
                : $"{key}:{property.Name}{ValueOf(property.GetValue(settings))}: {result.ErrorMessage}");
        }

        foreach (var property in settings.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length == 0 && IsNestedSettings(property.PropertyType) && property.GetValue(settings) is { } nested)
            {
                Collect(nested, $"{key}:{property.Name}", failures);
            }
        }
    }

    /// <summary>Nested settings are classes of ours; strings, URIs and lists are values.</summary>
    private static bool IsNestedSettings(Type type) =>
        type.IsClass && type.Assembly == typeof(SettingsValidation).Assembly;

    /// <summary>Numbers and times are shown; a string is not, as it may be a password.</summary>
    private static string ValueOf(object? value) =>
        value is IFormattable formattable ? $" = {formattable.ToString(null, CultureInfo.InvariantCulture)}" : "";
}
