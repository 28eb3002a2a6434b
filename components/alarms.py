"""CloudWatch alarms (all to the alerts topic) and the pipeline dashboard."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from .functions import METRICS_NAMESPACE, STACK_DIMENSION

PERIOD_SECONDS = 300

# What an old message in each work queue means (the oldest-message alarms' descriptions).
BACKLOG_CAUSES = {
    "processing": "the processor is not keeping up or not running.",
    "load": "the loader is not keeping up (functions.loader.max_concurrency) or not running: the "
    "warehouse lags, and messages never received expire without reaching the load DLQ.",
    "ingest": "the ingest worker is not keeping up or not running: accepted logs are not stored, "
    "and messages never received expire without reaching the ingest DLQ.",
}


def alarm_name(prefix: str, key: str) -> str:
    """An alarm's name: every alarm of a stack starts with ``<prefix>-``."""
    return f"{prefix}-{key}"


def alarm_arn_pattern(
    partition: pulumi.Input[str], region: str, account_id: pulumi.Input[str], prefix: str
) -> pulumi.Output[str]:
    """The ARNs of every alarm named by :func:`alarm_name` with ``prefix`` (ArnLike)."""
    return pulumi.Output.concat(
        "arn:", partition, ":cloudwatch:", region, ":", account_id, ":alarm:", alarm_name(prefix, "*")
    )


@dataclass(frozen=True)
class AlarmsArgs:
    region: str
    # The Pulumi stack's name: the STACK_DIMENSION of every custom metric the handlers
    # publish (components/functions.py). Alarms and widgets select this stack's by it.
    stack: str
    topic_arn: pulumi.Input[str]
    processor_function_name: pulumi.Input[str]
    processor_timeout_seconds: int
    # Every work queue, by a short label ("processing", "load", "ingest"), and the age (s)
    # past which its oldest message raises "<label>-oldest-message".
    queue_names: Mapping[str, pulumi.Input[str]]
    oldest_message_seconds: Mapping[str, int]
    # Every dead-letter queue, by a short label ("processing", "load", ...).
    dlq_names: Mapping[str, pulumi.Input[str]]
    # Every function, by service name (dashboard only).
    function_names: Mapping[str, pulumi.Input[str]]
    staleness_minutes: int
    # The report function (EventBridge invokes it asynchronously: a failure is retried
    # twice, then the event is dropped).
    report_function_name: pulumi.Input[str]
    # The daily report's schedule rule (default bus): its failed invocations.
    report_schedule_rule_name: pulumi.Input[str]
    # The queue consumers whose failures page within minutes (before their DLQs fill).
    loader_function_name: pulumi.Input[str]
    ingest_worker_function_name: pulumi.Input[str]
    # The ingest API: an HTTP API (its id) or the ingest function's URL (the function's name).
    ingest_endpoint: Literal["http_api", "function_url"]
    ingest_function_name: pulumi.Input[str]
    ingest_api_id: pulumi.Input[str] | None = None
    error_rate_percent: float = 1.0
    duration_p99_ratio: float = 0.8
    # The RDS instance, when the warehouse runs on RDS.
    db_instance_identifier: pulumi.Input[str] | None = None
    rds_cpu_percent: float = 80.0
    # Alarm names are "<prefix>-<alarm>" and the dashboard is "<prefix>" (console names,
    # unique per account and region); the component's name when empty.
    name_prefix: str = ""
    # Whether the target turns the handlers' EMF log lines into metrics of METRICS_NAMESPACE.
    # AWS does; LocalStack does not (docs/localstack.md, "Alarms"), so there the custom
    # metrics never arrive and missing data must not count as breaching.
    metrics_from_logs: bool = True


class Alarms(pulumi.ComponentResource):
    """The pipeline's alarm set: dead letters, processor errors and latency, processor,
    loader and ingest worker failures, loads rejected for good, the age of each work queue's backlog, data
    staleness, report failures and its schedule's failed invocations, ingest API server
    errors, database CPU; and one dashboard of the same signals."""

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:alarms:Alarms", name, None, opts)
        self._name = name
        self._prefix = args.name_prefix or name
        self._args = args
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}

        for label, queue_name in args.dlq_names.items():
            # The maximum over 5 minutes, not 1: while `headrace dlq inspect` reads a DLQ it
            # holds every message (in flight, not visible), and a 1-minute sample taken then
            # is 0, which would clear the alarm ("OK" to the topic) though nothing was fixed,
            # then raise it again. Over 5 minutes only a pass that outlasts a whole period
            # does. Dead letters wait days for an operator: 5 minutes is prompt enough.
            self._alarm(
                f"{label}-dlq-depth",
                f"Messages in the {label} dead-letter queue: they failed every retry and need an operator.",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": queue_name},
                statistic="Maximum",
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                period=PERIOD_SECONDS,
            )

        self._alarm(
            "processor-error-rate",
            f"Processor invocations failing: more than {args.error_rate_percent:g}% errors over 5 minutes.",
            comparison_operator="GreaterThanThreshold",
            threshold=args.error_rate_percent,
            metric_queries=[
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="rate",
                    expression="IF(invocations > 0, 100 * errors / invocations, 0)",
                    label="Error rate (%)",
                    return_data=True,
                ),
                self._lambda_query("errors", "Errors", args.processor_function_name),
                self._lambda_query("invocations", "Invocations", args.processor_function_name),
            ],
        )

        duration_limit_ms = args.duration_p99_ratio * args.processor_timeout_seconds * 1000
        self._alarm(
            "processor-duration-p99",
            f"Processor p99 duration above {args.duration_p99_ratio:.0%} of its "
            f"{args.processor_timeout_seconds} s timeout: batches are close to timing out.",
            namespace="AWS/Lambda",
            metric_name="Duration",
            dimensions={"FunctionName": args.processor_function_name},
            extended_statistic="p99",
            comparison_operator="GreaterThanThreshold",
            threshold=duration_limit_ms,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )

        # Failures of the processor, the loader and the ingest worker, minutes after they
        # start: their DLQs fill only after every retry (~2.5 h / ~61 / ~30 minutes with the
        # defaults), and their oldest-message alarms never see a message that keeps failing
        # (SQS stops counting its age from its third receive). All three report failed
        # records in batchItemFailures and return normally, so their Lambda Errors miss
        # every record that failed (an S3, DynamoDB or database outage): the handler's own
        # count of failed records does not, and Errors adds the invocations that crashed or
        # timed out before publishing it. Failures in 2 of 3 periods: one failed attempt
        # that succeeds on its retry (a visibility timeout later) is not paged, a record that
        # fails again within the window or an outage is. (The processor's retries are ~30
        # minutes apart by default: one file that keeps failing is left to its DLQ alarm.)
        for key, service, metric, function_name, meaning in (
            (
                "processor-failures",
                "processor",
                "FilesRetried",
                args.processor_function_name,
                "Files are failing and being retried (S3, DynamoDB or EventBridge errors or "
                "throttling, access denied, a limit of the function): processing lags; the "
                "files wait in the processing queue, then its DLQ.",
            ),
            (
                "loader-failures",
                "loader",
                "LoadFailures",
                args.loader_function_name,
                "Loads into PostgreSQL are failing (the database down or refusing connections, "
                "statement timeouts, a column conflict): the warehouse lags; the files wait "
                "in the load queue, then its DLQ.",
            ),
            (
                "ingest-worker-failures",
                "ingest-worker",
                "LogsFailed",
                args.ingest_worker_function_name,
                "The ingest worker cannot store accepted logs (a DynamoDB or KMS error, a "
                "malformed message): they wait in the ingest queue, then its DLQ.",
            ),
        ):
            self._alarm(
                key,
                f"{meaning} Failed records ({metric}) or failed invocations (Errors) in 2 of "
                "3 five-minute periods.",
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                metric_queries=[
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                        id="failures",
                        # A period without either (no failure: neither metric is published)
                        # is 0, not missing.
                        expression="FILL(records, 0) + FILL(errors, 0)",
                        label="Failed records and invocations",
                        return_data=True,
                    ),
                    self._custom_query("records", metric, service),
                    self._lambda_query("errors", "Errors", function_name),
                ],
            )

        # A load PostgreSQL refuses for good is recorded and not retried: it never reaches the
        # load DLQ (a redrive could not help), so the DLQ alarm never sees it. One is enough.
        self._alarm(
            "load-rejected",
            "PostgreSQL rejected a file's load for good (LoadRejected: a column limit, a row too "
            "big, a value or a type change its table cannot take): the load is not retried and "
            "leaves no DLQ message; the file's rows are not in the warehouse. headrace status "
            "lists it with the reason.",
            namespace=METRICS_NAMESPACE,
            metric_name="LoadsRejected",
            dimensions=self._custom_dimensions("loader"),
            statistic="Sum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )

        for label, queue_name in args.queue_names.items():
            threshold = args.oldest_message_seconds[label]
            self._alarm(
                f"{label}-oldest-message",
                f"The {label} queue's oldest message is older than {threshold} s: "
                f"{BACKLOG_CAUSES.get(label, 'its consumer is not keeping up or not running.')}",
                namespace="AWS/SQS",
                metric_name="ApproximateAgeOfOldestMessage",
                dimensions={"QueueName": queue_name},
                statistic="Maximum",
                comparison_operator="GreaterThanThreshold",
                threshold=threshold,
            )

        self._alarm(
            "report-errors",
            "The report function failed (the daily report or the 5-minute signals). EventBridge "
            "invokes it asynchronously: after two retries the event is dropped, so a day's report "
            'can be lost; run it again with {"date": "YYYY-MM-DD"}.',
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": args.report_function_name},
            statistic="Sum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )

        # The daily report's schedule could not invoke the function at all (its permission
        # removed, the function missing or refusing the event): no invocation, so no Errors.
        # EventBridge publishes FailedInvocations (default bus: RuleName only) when not 0.
        self._alarm(
            "report-schedule-failures",
            "The daily report's schedule could not invoke the report function: no report is "
            'written or sent that day; fix the cause, then run it with {"date": "YYYY-MM-DD"}.',
            namespace="AWS/Events",
            metric_name="FailedInvocations",
            dimensions={"RuleName": args.report_schedule_rule_name},
            statistic="Sum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )

        # Server errors the ingest API answered: the function's own 500s and 503s (it answers
        # every error itself, so its Errors metric misses them), its crashes and timeouts.
        if args.ingest_endpoint == "http_api":
            if args.ingest_api_id is None:
                raise ValueError("the ingest-5xx alarm of an HTTP API needs its id (ingest_api_id)")
            server_errors: dict[str, Any] = {
                "namespace": "AWS/ApiGateway",
                "metric_name": "5xx",
                "dimensions": {"ApiId": args.ingest_api_id},
            }
        else:
            server_errors = {
                "namespace": "AWS/Lambda",
                "metric_name": "Url5xxCount",
                "dimensions": {"FunctionName": args.ingest_function_name},
            }
        self._alarm(
            "ingest-5xx",
            "The ingest API answered with a server error (5xx): tenants' logs were refused or may "
            "not have been enqueued.",
            statistic="Sum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            **server_errors,
        )

        self._alarm(
            "data-staleness",
            f"No file completed for {args.staleness_minutes} minutes (or the report function's "
            "signals stopped arriving).",
            namespace=METRICS_NAMESPACE,
            metric_name="SecondsSinceLastCompletedFile",
            dimensions=self._custom_dimensions("report"),
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=args.staleness_minutes * 60,
            # Two signals in a row: one 5-minute run that is late (or missing) does not trip it.
            evaluation_periods=2,
            datapoints_to_alarm=2,
            # Missing signals mean the report function is failing: that is stale too. Not
            # where no EMF line ever becomes a metric (LocalStack): every signal is missing
            # there, and "breaching" would raise the alarm on every deployment for ever.
            treat_missing_data="breaching" if args.metrics_from_logs else "missing",
        )

        if args.db_instance_identifier is not None:
            self._alarm(
                "rds-cpu",
                f"Warehouse database CPU above {args.rds_cpu_percent:g}% for 15 minutes.",
                namespace="AWS/RDS",
                metric_name="CPUUtilization",
                dimensions={"DBInstanceIdentifier": args.db_instance_identifier},
                statistic="Average",
                comparison_operator="GreaterThanThreshold",
                threshold=args.rds_cpu_percent,
                evaluation_periods=3,
            )

        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=self._prefix,
            dashboard_body=pulumi.Output.all(
                stack=args.stack,
                functions=dict(args.function_names),
                dlqs=dict(args.dlq_names),
                queue=args.queue_names["processing"],
                db=args.db_instance_identifier,
            ).apply(lambda values: json.dumps(dashboard_body(args.region, **values))),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"alarm_names": [a.name for a in self.alarms.values()]})

    def _custom_dimensions(self, service: str) -> dict[str, str]:
        """The dimensions a handler publishes its metrics with: its service and this stack."""
        return {"service": service, STACK_DIMENSION: self._args.stack}

    def _custom_query(self, query_id: str, metric: str, service: str) -> Any:
        return self._sum_query(query_id, METRICS_NAMESPACE, metric, self._custom_dimensions(service))

    @classmethod
    def _lambda_query(cls, query_id: str, metric: str, function_name: pulumi.Input[str]) -> Any:
        return cls._sum_query(query_id, "AWS/Lambda", metric, {"FunctionName": function_name})

    @staticmethod
    def _sum_query(query_id: str, namespace: str, metric: str, dimensions: Mapping[str, Any]) -> Any:
        """A metric of an alarm's expression (not its result): its 5-minute sum."""
        return aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=query_id,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=namespace,
                metric_name=metric,
                dimensions=dict(dimensions),
                stat="Sum",
                period=PERIOD_SECONDS,
            ),
            return_data=False,
        )

    def _alarm(self, key: str, description: str, **settings: Any) -> aws.cloudwatch.MetricAlarm:
        settings.setdefault("evaluation_periods", 1)
        if "metric_queries" not in settings:
            settings.setdefault("period", PERIOD_SECONDS)
        settings.setdefault("treat_missing_data", "notBreaching")
        alarm = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=alarm_name(self._prefix, key),
            alarm_description=description,
            alarm_actions=[self._args.topic_arn],
            ok_actions=[self._args.topic_arn],
            opts=pulumi.ResourceOptions(parent=self),
            **settings,
        )
        self.alarms[key] = alarm
        return alarm


def dashboard_body(
    region: str,
    stack: str,
    functions: Mapping[str, str],
    dlqs: Mapping[str, str],
    queue: str,
    db: str | None,
) -> dict[str, Any]:
    def widget(title: str, metrics: list[list[Any]], stat: str = "Sum", width: int = 12) -> dict[str, Any]:
        return {
            "type": "metric",
            "width": width,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "metrics": metrics,
                "stat": stat,
                "period": PERIOD_SECONDS,
                "view": "timeSeries",
            },
        }

    def custom(metric: str, service: str) -> list[Any]:
        # the dimensions the handlers publish with: a widget without the stack's would sum
        # every stack of the account and region (or find nothing)
        return [METRICS_NAMESPACE, metric, "service", service, STACK_DIMENSION, stack]

    widgets = [
        widget(
            "Files",
            [
                custom("FilesProcessed", "processor"),
                custom("FilesFailed", "processor"),
                custom("FilesRetried", "processor"),
                custom("FilesIgnored", "processor"),
                custom("FilesOutOfTime", "processor"),
                custom("FilesOutOfMemory", "processor"),
                custom("FilesOutOfScratchSpace", "processor"),
                custom("FilesLoaded", "loader"),
                custom("LoadFailures", "loader"),
                custom("LoadsRejected", "loader"),
            ],
        ),
        widget(
            "Rows",
            [custom("RowsProcessed", "processor"), custom("RowsLoaded", "loader")],
        ),
        widget(
            "Processing latency (upload to completed, ms)",
            [custom("ProcessingLatency", "processor")],
            stat="p90",
        ),
        widget(
            "Seconds since the last completed file",
            [custom("SecondsSinceLastCompletedFile", "report")],
            stat="Maximum",
        ),
        widget(
            "Processing queue",
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue],
            ],
            stat="Maximum",
        ),
        widget(
            "Dead-letter queues",
            [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", name] for name in dlqs.values()],
            stat="Maximum",
        ),
        widget(
            "Function errors",
            [["AWS/Lambda", "Errors", "FunctionName", name] for name in functions.values()],
        ),
        widget(
            "Function duration p99 (ms)",
            [["AWS/Lambda", "Duration", "FunctionName", name] for name in functions.values()],
            stat="p99",
        ),
        widget(
            "Ingest",
            [
                custom("LogsStored", "ingest-worker"),
                custom("LogsDuplicate", "ingest-worker"),
                custom("LogsConflict", "ingest-worker"),
                custom("LogsFailed", "ingest-worker"),
            ],
        ),
    ]
    if db is not None:
        widgets.append(
            widget(
                "Database CPU (%)",
                [["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", db]],
                stat="Average",
            )
        )
    return {"widgets": widgets}
