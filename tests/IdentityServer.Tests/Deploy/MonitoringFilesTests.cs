using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using IdentityServer.Telemetry;
using IdentityServer.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using YamlDotNet.RepresentationModel;

namespace IdentityServer.Tests.Deploy;

/// <summary>
/// The alerting rules and the dashboard in deploy/monitoring name metrics and labels as the server's /metrics scrape
/// spells them: an instrument or a tag renamed in the server would otherwise leave an alert that never fires and a
/// panel that stays empty, silently. Each expression's metrics and label names are looked up in a real scrape.
/// </summary>
public sealed class MonitoringFilesTests(SqliteServerFixture server) : IClassFixture<SqliteServerFixture>
{
    private static readonly string MonitoringFolder = Path.Combine(Repository.Root, "deploy", "monitoring");

    /// <summary>Series Prometheus makes itself, and labels it adds to every series it scrapes.</summary>
    private static readonly HashSet<string> MadeByPrometheus = ["up"];

    private static readonly HashSet<string> AddedByPrometheus = ["job", "instance", "le"];

    private static readonly HashSet<string> PromQlKeywords = ["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"];

    [Fact]
    public void Every_alert_has_a_severity_a_summary_and_a_description()
    {
        var rules = AlertRules();

        Assert.NotEmpty(rules);
        Assert.Equal(rules.Count, rules.Select(r => r.Name).Distinct().Count());
        foreach (var rule in rules)
        {
            Assert.Contains(rule.Severity, new[] { "warning", "critical" });
            Assert.False(string.IsNullOrWhiteSpace(rule.Summary), rule.Name);
            Assert.False(string.IsNullOrWhiteSpace(rule.Description), rule.Name);
        }
    }

    [Fact]
    public async Task Every_metric_and_label_the_alerts_and_the_dashboard_use_is_in_the_servers_scrape()
    {
        var expressions = AlertRules().Select(r => (r.Name, r.Expression))
            .Concat(DashboardExpressions())
            .ToList();
        Assert.True(expressions.Count > 10, "the files hold the expected expressions");

        var scrape = await ScrapeWithEveryInstrumentRecordedAsync();

        var problems = new List<string>();
        foreach (var (where, expression) in expressions)
        {
            var metrics = MetricsOf(expression);
            Assert.True(metrics.Count > 0, $"{where}: no metric found in {expression}");
            foreach (var (metric, labels) in metrics.Where(m => !MadeByPrometheus.Contains(m.Metric)))
            {
                if (!scrape.TryGetValue(metric, out var scrapedLabels))
                {
                    problems.Add($"{where}: metric {metric} is not in the scrape");
                    continue;
                }

                problems.AddRange(labels.Where(l => !AddedByPrometheus.Contains(l) && !scrapedLabels.Contains(l))
                    .Select(l => $"{where}: metric {metric} has no label {l} (it has {string.Join(", ", scrapedLabels)})"));
            }

            var labelsOfItsMetrics = metrics.SelectMany(m => scrape.GetValueOrDefault(m.Metric) ?? []).ToHashSet();
            problems.AddRange(GroupingLabelsOf(expression).Where(l => !AddedByPrometheus.Contains(l) && !labelsOfItsMetrics.Contains(l))
                .Select(l => $"{where}: grouping label {l} is on none of its metrics"));
        }

        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    /// <summary>
    /// Starts a server with the scrape on, makes a token and a refused token request, and records the rarer
    /// instruments directly (their counting is tested in Telemetry/TelemetryTests); returns each series name
    /// (histograms also by their _bucket, _count and _sum) with the label names it carries.
    /// </summary>
    private async Task<Dictionary<string, HashSet<string>>> ScrapeWithEveryInstrumentRecordedAsync()
    {
        await using var enabled = server.StartServer(new Dictionary<string, string?>
        {
            ["OpenTelemetry:Prometheus:Enabled"] = "true",
            ["OpenTelemetry:Prometheus:OnPublicListener"] = "true",
        });
        var attached = new AttachedServer(enabled, server.Provider);
        var client = await attached.CreateConfidentialClientAsync();
        var http = attached.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret!)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await HttpProtocol.ClientCredentialsAsync(http, client.ClientId, client.ClientSecret + "-wrong")).StatusCode);
        var metrics = enabled.Services.GetRequiredService<ServerMetrics>();
        metrics.SignIn("failure");
        metrics.LogoutToken("failed");
        metrics.Pruned("token", 1);
        metrics.TokenEntriesWritten(1, 0.001, committed: false);

        Dictionary<string, HashSet<string>> series = [];
        await Eventually.TrueAsync(async () =>
        {
            series = ParseScrape(await http.GetStringAsync("/metrics"));
            return series.ContainsKey("identityserver_sign_ins_total") && series.ContainsKey("identityserver_pruned_total")
                && series.ContainsKey("identityserver_logout_tokens_total") && series.ContainsKey("identityserver_tokens_issued_total");
        }, TimeSpan.FromSeconds(15), "the scrape to show the recorded instruments");
        return series;
    }

    private static Dictionary<string, HashSet<string>> ParseScrape(string scrape)
    {
        var series = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var line in scrape.Split('\n').Where(l => l.Length > 0 && l[0] != '#'))
        {
            var match = Regex.Match(line, @"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s");
            if (!match.Success)
            {
                continue;
            }

            var labels = series.TryGetValue(match.Groups[1].Value, out var known) ? known : series[match.Groups[1].Value] = [];
            foreach (Match label in Regex.Matches(match.Groups[2].Value, @"([a-zA-Z_][a-zA-Z0-9_]*)=""(?:[^""\\]|\\.)*"""))
            {
                labels.Add(label.Groups[1].Value);
            }
        }

        return series;
    }

    /// <summary>The series an expression selects, each with the label names its matchers use.</summary>
    internal static List<(string Metric, List<string> Labels)> MetricsOf(string expression)
    {
        var withoutStrings = Regex.Replace(expression, @"""(?:[^""\\]|\\.)*""", "\"\"");
        var withoutRanges = Regex.Replace(withoutStrings, @"\[[^\]]*\]", " ");
        var withoutGrouping = Regex.Replace(withoutRanges, @"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ");
        var selectors = new List<(string, List<string>)>();
        foreach (Match match in Regex.Matches(withoutGrouping, @"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?"))
        {
            var name = match.Groups[1].Value;
            if (match.Groups[3].Success || PromQlKeywords.Contains(name))
            {
                continue; // a function, or an operator keyword
            }

            var labels = Regex.Matches(match.Groups[2].Value, @"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)").Select(m => m.Groups[1].Value).ToList();
            selectors.Add((name, labels));
        }

        return selectors;
    }

    private static IEnumerable<string> GroupingLabelsOf(string expression) =>
        Regex.Matches(expression, @"\b(?:by|without)\s*\(([^)]*)\)")
            .SelectMany(m => m.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private sealed record AlertRule(string Name, string Expression, string? Severity, string? Summary, string? Description);

    private static List<AlertRule> AlertRules()
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(MonitoringFolder, "prometheus-rules.yaml")))
        {
            yaml.Load(reader);
        }

        var root = (YamlMappingNode)yaml.Documents.Single().RootNode;
        return [.. ((YamlSequenceNode)root["groups"]).Cast<YamlMappingNode>()
            .SelectMany(group => ((YamlSequenceNode)group["rules"]).Cast<YamlMappingNode>())
            .Select(rule => new AlertRule(
                Scalar(rule, "alert")!,
                Scalar(rule, "expr")!,
                Scalar(Child(rule, "labels"), "severity"),
                Scalar(Child(rule, "annotations"), "summary"),
                Scalar(Child(rule, "annotations"), "description")))];
    }

    private static YamlMappingNode? Child(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) ? child as YamlMappingNode : null;

    private static string? Scalar(YamlMappingNode? node, string key) =>
        node is not null && node.Children.TryGetValue(new YamlScalarNode(key), out var value) ? (value as YamlScalarNode)?.Value : null;

    private static IEnumerable<(string Where, string Expression)> DashboardExpressions()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(MonitoringFolder, "grafana-dashboard.json")));
        return [.. dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(panel => panel.GetProperty("targets").EnumerateArray()
                .Select(target => ($"panel '{panel.GetProperty("title").GetString()}'", target.GetProperty("expr").GetString()!)))];
    }
}
