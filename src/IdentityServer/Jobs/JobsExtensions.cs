using IdentityServer.Shared;
using Quartz;

namespace IdentityServer.Jobs;

public static class JobsExtensions
{
    /// <summary>Quartz background jobs; token pruning first.</summary>
    public static WebApplicationBuilder AddJobs(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<TokenPruningOptions>().BindConfiguration(TokenPruningOptions.Section)
            .ValidateSettings(TokenPruningOptions.Section).ValidateOnStart();
        builder.Services.AddScoped<TokenPruner>();

        var pruning = builder.Configuration.GetSection(TokenPruningOptions.Section).Get<TokenPruningOptions>() ?? new TokenPruningOptions();
        builder.Services.AddQuartz(quartz =>
        {
            if (pruning.Enabled && CronExpression.TryParse(pruning.Schedule, out _))
            {
                quartz.AddJob<TokenPruningJob>(job => job.WithIdentity(TokenPruningJob.Key));
                quartz.AddTrigger(trigger => trigger
                    .ForJob(TokenPruningJob.Key)
                    .WithIdentity("token-pruning-schedule")
                    .WithCronSchedule(pruning.Schedule));
            }
        });
        builder.Services.AddQuartzHostedService(options => options.WaitForJobsToComplete = true);
        return builder;
    }
}
