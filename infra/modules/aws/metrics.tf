# Optional CloudWatch dashboard and alarms (create_dashboard) over the metrics txbridge writes
# itself: CloudWatch Embedded Metric Format members in the one JSON log line per exchange (and per
# issuer-key fetch), in the function's log group (aws_cloudwatch_log_group.function). CloudWatch
# Logs extracts them: no agent, no PutMetricData, no extra permission. The records are written
# (and the custom metrics billed) whether or not the dashboard exists.
#
# Vocabulary (namespace txbridge; ARCHITECTURE.md, "Metrics"):
#   txbridge_exchanges_total (Count, 1 per exchange) and txbridge_exchange_duration_seconds
#   (Seconds), dimension sets [outcome] always, [outcome, error] on rejected/error records,
#   [outcome, cluster] when the cluster is known, [outcome, kind] always, [outcome, policy] when a
#   policy allowed; outcome = issued | rejected (4xx) | error (5xx), error = the OAuth code,
#   kind = exchange | replacement, policy = the policy id.
#   txbridge_key_fetches_total (Count, 1 per issuer discovery/JWKS fetch), dimension set
#   [cluster, result]; result = ok or the failure kind (transport, status, too_large,
#   bad_discovery, issuer_mismatch, bad_jwks_uri, bad_jwks, timeout).
# The dimensions do not name the function: two txbridge deployments in one account and region
# add up in these metrics.

data "aws_region" "current" {}

locals {
  metrics_namespace = "txbridge"
  outcomes          = ["issued", "rejected", "error"]

  # Metric math over the three [outcome] series; FILL(..., 0) so that a minute without, say,
  # rejections still counts. No exchange at all gives 0/0, which CloudWatch drops: missing data.
  error_rate_expression = "100 * FILL(m_error, 0) / (FILL(m_issued, 0) + FILL(m_rejected, 0) + FILL(m_error, 0))"

  exchanges_search = "SEARCH('{${local.metrics_namespace},%s} MetricName=\"txbridge_exchanges_total\"%s', 'Sum', %d)"

  dashboard_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 12, height = 6
      properties = {
        title   = "Exchanges by outcome (and 5xx %, right axis)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 60
        metrics = concat(
          [for o in local.outcomes : [local.metrics_namespace, "txbridge_exchanges_total", "outcome", o, { id = "m_${o}", stat = "Sum", label = o }]],
          [[{ id = "error_rate", expression = local.error_rate_expression, label = "5xx %", yAxis = "right" }]],
        )
      }
    },
    {
      type = "metric", x = 12, y = 0, width = 12, height = 6
      properties = {
        title   = "Rejections and errors by OAuth error code"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = true
        period  = 60
        # The [outcome, error] set exists only on rejected and error records.
        metrics = [[{ id = "by_error", expression = format(local.exchanges_search, "outcome,error", "", 60) }]]
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 12, height = 6
      properties = {
        title   = "Issued by cluster"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = true
        period  = 60
        metrics = [[{ id = "by_cluster", expression = format(local.exchanges_search, "outcome,cluster", " outcome=\"issued\"", 60) }]]
      }
    },
    {
      type = "metric", x = 12, y = 6, width = 12, height = 6
      properties = {
        title   = "Exchange duration, issued (seconds)"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = false
        period  = 60
        metrics = [
          for p in ["p50", "p99"] :
          [local.metrics_namespace, "txbridge_exchange_duration_seconds", "outcome", "issued", { stat = p, label = p }]
        ]
        annotations = {
          horizontal = [{ label = "p99 alarm", value = var.alarm_p99_latency_seconds }]
        }
      }
    },
    {
      type = "metric", x = 0, y = 12, width = 24, height = 6
      properties = {
        title   = "Issuer key fetches by cluster and result"
        region  = data.aws_region.current.region
        view    = "timeSeries"
        stacked = true
        period  = 300
        metrics = [[{ id = "key_fetches", expression = "SEARCH('{${local.metrics_namespace},cluster,result} MetricName=\"txbridge_key_fetches_total\"', 'Sum', 300)" }]]
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "txbridge" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

# Server-side failures (outcome error: 503 temporarily_unavailable when an upstream is down, 500)
# as a share of all exchanges. Alarms cannot use SEARCH: the three [outcome] series are named.
resource "aws_cloudwatch_metric_alarm" "error_rate" {
  count = var.create_dashboard ? 1 : 0

  alarm_name          = "${var.name}-error-rate"
  alarm_description   = "txbridge ${var.name}: more than ${var.alarm_error_rate_percent}% of token exchanges answered 5xx (outcome=error: an upstream such as discovery/JWKS or KMS unavailable, or a server error). Metrics from the function's EMF log lines."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_error_rate_percent
  evaluation_periods  = var.alarm_evaluation_periods
  datapoints_to_alarm = var.alarm_datapoints_to_alarm
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  metric_query {
    id          = "error_rate"
    expression  = local.error_rate_expression
    label       = "5xx % of exchanges"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.outcomes
    content {
      id          = "m_${metric_query.value}"
      return_data = false

      metric {
        namespace   = local.metrics_namespace
        metric_name = "txbridge_exchanges_total"
        dimensions  = { outcome = metric_query.value }
        period      = var.alarm_period_seconds
        stat        = "Sum"
      }
    }
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  count = var.create_dashboard ? 1 : 0

  alarm_name          = "${var.name}-latency-p99"
  alarm_description   = "txbridge ${var.name}: p99 duration of issued token exchanges above ${var.alarm_p99_latency_seconds} s (slow issuer discovery/JWKS or KMS). Metrics from the function's EMF log lines."
  namespace           = local.metrics_namespace
  metric_name         = "txbridge_exchange_duration_seconds"
  dimensions          = { outcome = "issued" }
  extended_statistic  = "p99"
  period              = var.alarm_period_seconds
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_p99_latency_seconds
  evaluation_periods  = var.alarm_evaluation_periods
  datapoints_to_alarm = var.alarm_datapoints_to_alarm
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions

  tags = var.tags
}
