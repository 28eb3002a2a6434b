"""Alarms (complete set, all to SNS), dashboard, alerts topic and report schedules."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

from components.config import StackConfig
from components.queues import visibility_timeout

from .conftest import ROOT, Deployment, deploy


def _alarms(stack: Deployment) -> dict[str, Any]:
    prefix = f"headrace-{stack.stack}-"
    alarms = stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert all(r.inputs["name"].startswith(prefix) for r in alarms)
    return {r.inputs["name"].removeprefix(prefix): r for r in alarms}


def test_alarm_set_is_complete(dev: Deployment, local: Deployment) -> None:
    # Given both stacks
    common = {
        "processing-dlq-depth",
        "load-dlq-depth",
        "ingest-dlq-depth",
        "processor-error-rate",
        "processor-duration-p99",
        "processing-oldest-message",
        "load-oldest-message",
        "ingest-oldest-message",
        "data-staleness",
        "report-errors",
        "report-schedule-failures",
        "processor-failures",
        "loader-failures",
        "load-rejected",
        "ingest-worker-failures",
        "ingest-5xx",
    }
    # Then each has every alarm; only the RDS stack watches database CPU
    assert set(_alarms(dev)) == common | {"rds-cpu"}
    assert set(_alarms(local)) == common


def test_every_alarm_notifies_the_alerts_topic(stack: Deployment) -> None:
    topic = stack.outputs["alerts_topic_arn"]
    for alarm in _alarms(stack).values():
        assert alarm.inputs["alarmActions"] == [topic]
        assert alarm.inputs["okActions"] == [topic]
        assert alarm.inputs["alarmDescription"]


def test_dlq_alarms_fire_on_the_first_dead_letter(stack: Deployment) -> None:
    alarms = _alarms(stack)
    queues = {
        r.name.removeprefix(f"headrace-{stack.stack}-"): r.outputs["name"]
        for r in stack.of_type("aws:sqs/queue:Queue")
    }
    for label in ("processing", "load", "ingest"):
        alarm = alarms[f"{label}-dlq-depth"].inputs
        assert alarm["namespace"] == "AWS/SQS" and alarm["metricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["dimensions"] == {"QueueName": queues[f"{label}-dlq"]}
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["threshold"] == 1


def test_a_dlq_alarm_is_not_cleared_while_its_messages_are_being_read(stack: Deployment) -> None:
    # Given the DLQ alarms: `headrace dlq inspect` holds every message of the DLQ it reads
    # (in flight: ApproximateNumberOfMessagesVisible is 0 meanwhile), and SQS samples the
    # metric once a minute
    alarms = _alarms(stack)
    for label in ("processing", "load", "ingest"):
        alarm = alarms[f"{label}-dlq-depth"].inputs
        # Then each takes the largest count over 5 minutes: a pass shorter than that leaves
        # it in ALARM, instead of an "OK" to the alerts topic and a new ALARM a minute later
        assert (alarm["statistic"], alarm["period"], alarm["evaluationPeriods"]) == ("Maximum", 300, 1)
        assert alarm["treatMissingData"] == "notBreaching"  # an empty DLQ publishes nothing


def test_processor_alarms(dev: Deployment) -> None:
    alarms = _alarms(dev)
    processor = dev.outputs["function_names"]["processor"]
    # Error rate: Errors / Invocations above 1 %
    rate = alarms["processor-error-rate"].inputs
    assert rate["threshold"] == 1 and rate["comparisonOperator"] == "GreaterThanThreshold"
    queries = {q["id"]: q for q in rate["metricQueries"]}
    assert queries["rate"]["expression"] == "IF(invocations > 0, 100 * errors / invocations, 0)"
    assert queries["rate"]["returnData"] is True
    assert queries["errors"]["metric"]["metricName"] == "Errors"
    assert queries["invocations"]["metric"]["metricName"] == "Invocations"
    assert queries["errors"]["metric"]["dimensions"] == {"FunctionName": processor}
    # p99 duration near the timeout: 80 % of 300 s
    duration = alarms["processor-duration-p99"].inputs
    assert duration["extendedStatistic"] == "p99" and duration["metricName"] == "Duration"
    assert duration["threshold"] == 0.8 * 300 * 1000
    assert duration["dimensions"] == {"FunctionName": processor}
    # Backlog: age of the processing queue's oldest message
    oldest = alarms["processing-oldest-message"].inputs
    assert oldest["metricName"] == "ApproximateAgeOfOldestMessage"
    assert oldest["threshold"] == 6 * 300 + 5 + 900  # one retry's wait (visibility timeout) + 15 min
    assert oldest["dimensions"]["QueueName"] in dev.outputs["processing_queue_url"]


def test_every_work_queue_alarms_on_its_oldest_message(dev: Deployment) -> None:
    alarms = _alarms(dev)
    queues = {r.name.removeprefix("headrace-dev-"): r for r in dev.of_type("aws:sqs/queue:Queue")}
    # Then the load and ingest queues are watched like the processing queue: by default one
    # retry's wait (their visibility timeout: 6 x timeout + batching window) plus 15 minutes
    for label, visibility in (("processing", 6 * 300 + 5), ("load", 6 * 120 + 10), ("ingest", 6 * 60 + 2)):
        assert queues[label].inputs["visibilityTimeoutSeconds"] == visibility
        oldest = alarms[f"{label}-oldest-message"].inputs
        assert (oldest["namespace"], oldest["metricName"], oldest["statistic"]) == (
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "Maximum",
        )
        assert oldest["dimensions"] == {"QueueName": queues[label].outputs["name"]}
        assert oldest["comparisonOperator"] == "GreaterThanThreshold"
        assert oldest["threshold"] == visibility + 900, label


def test_a_failing_report_function_raises_an_alarm(stack: Deployment) -> None:
    # Given the report function, which EventBridge invokes asynchronously (a failed event is
    # retried twice, then dropped)
    errors = _alarms(stack)["report-errors"].inputs
    # Then any error of it raises an alarm
    assert (errors["namespace"], errors["metricName"], errors["statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert errors["dimensions"] == {"FunctionName": stack.outputs["function_names"]["report"]}
    assert errors["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and errors["threshold"] == 1
    assert errors["treatMissingData"] == "notBreaching"


def test_a_daily_report_schedule_that_cannot_invoke_raises_an_alarm(stack: Deployment) -> None:
    # Given the daily schedule rule (default bus), which invokes the report function: when it
    # cannot (permission, function missing), nothing runs, so the function has no Errors
    [daily] = [
        r
        for r in stack.of_type("aws:cloudwatch/eventRule:EventRule")
        if r.name == f"headrace-{stack.stack}-reporting-daily"
    ]
    assert daily.inputs.get("eventBusName") is None
    failed = _alarms(stack)["report-schedule-failures"].inputs
    # Then EventBridge's count of its failed invocations raises an alarm at the first
    assert (failed["namespace"], failed["metricName"], failed["dimensions"]) == (
        "AWS/Events",
        "FailedInvocations",
        {"RuleName": daily.outputs["name"]},
    )
    assert (failed["statistic"], failed["period"], failed["evaluationPeriods"]) == ("Sum", 300, 1)
    assert failed["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and failed["threshold"] == 1
    assert failed["treatMissingData"] == "notBreaching"  # published only when not 0


def test_a_load_rejected_for_good_pages_at_once(stack: Deployment) -> None:
    # Given the loader: a load PostgreSQL refuses for good is not retried and leaves no
    # dead letter, so neither loader-failures (2 of 3 periods) nor load-dlq-depth sees it
    alarm = _alarms(stack)["load-rejected"].inputs
    # Then its own count of rejected loads (this stack's) pages on the first one
    assert (alarm["namespace"], alarm["metricName"]) == ("headrace", "LoadsRejected")
    assert alarm["dimensions"] == {"service": "loader", "stack": stack.stack}
    assert (alarm["statistic"], alarm["period"], alarm["evaluationPeriods"]) == ("Sum", 300, 1)
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["threshold"] == 1
    assert alarm["treatMissingData"] == "notBreaching"  # published only when not 0


def test_processor_loader_and_ingest_worker_failures_page_within_minutes(stack: Deployment) -> None:
    # Given the processor, the loader and the ingest worker: each reports failed records in
    # batchItemFailures and returns normally, so its Lambda Errors count only crashed or
    # timed-out invocations (a file S3 or DynamoDB throttles is retried, not an error)
    alarms = _alarms(stack)
    functions = stack.outputs["function_names"]
    for key, service, metric in (
        ("processor-failures", "processor", "FilesRetried"),
        ("loader-failures", "loader", "LoadFailures"),
        ("ingest-worker-failures", "ingest-worker", "LogsFailed"),
    ):
        alarm = alarms[key].inputs
        queries = {q["id"]: q for q in alarm["metricQueries"]}
        # Then the alarm adds the handler's failed records (this stack's) to the failed
        # invocations, a period without either counting 0
        assert queries["failures"]["expression"] == "FILL(records, 0) + FILL(errors, 0)"
        assert queries["failures"]["returnData"] is True
        assert queries["records"]["metric"] == {
            "namespace": "headrace",
            "metricName": metric,
            "dimensions": {"service": service, "stack": stack.stack},
            "stat": "Sum",
            "period": 300,
        }
        assert queries["errors"]["metric"] == {
            "namespace": "AWS/Lambda",
            "metricName": "Errors",
            "dimensions": {"FunctionName": functions[service]},
            "stat": "Sum",
            "period": 300,
        }
        assert not queries["records"]["returnData"] and not queries["errors"]["returnData"]
        # any failure in 2 of 3 five-minute periods: an attempt that fails once and succeeds on
        # its retry is not paged; an outage is, in about 10 minutes, long before the DLQ
        assert (alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (3, 2)
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["threshold"] == 1
        assert alarm["alarmActions"] == [stack.outputs["alerts_topic_arn"]]
        assert alarm["okActions"] == [stack.outputs["alerts_topic_arn"]]


def test_ingest_server_errors_raise_an_alarm_in_both_endpoint_modes(
    dev: Deployment, local: Deployment
) -> None:
    # Given dev behind an HTTP API: its 5xx count (the function answers its own 500s and
    # 503s, which its Errors metric does not count)
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    assert api.id
    http = _alarms(dev)["ingest-5xx"].inputs
    assert (http["namespace"], http["metricName"], http["dimensions"]) == (
        "AWS/ApiGateway",
        "5xx",
        {"ApiId": api.id},
    )
    # and the local stack behind a function URL: its Url5xxCount
    assert local.of_type("aws:apigatewayv2/api:Api") == []
    url = _alarms(local)["ingest-5xx"].inputs
    assert (url["namespace"], url["metricName"], url["dimensions"]) == (
        "AWS/Lambda",
        "Url5xxCount",
        {"FunctionName": local.outputs["function_names"]["ingest"]},
    )
    for alarm in (http, url):
        assert alarm["statistic"] == "Sum" and alarm["threshold"] == 1
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_staleness_and_database_alarms(dev: Deployment) -> None:
    alarms = _alarms(dev)
    # Staleness: the report function's signal, more than 1440 minutes, missing data breaches
    stale = alarms["data-staleness"].inputs
    assert (stale["namespace"], stale["metricName"], stale["dimensions"]) == (
        "headrace",
        "SecondsSinceLastCompletedFile",
        {"service": "report", "stack": "dev"},  # this stack's signal, not another's
    )
    assert stale["threshold"] == 1440 * 60 and stale["treatMissingData"] == "breaching"
    # in two 5-minute periods out of two: one late signal run does not trip it
    assert (stale["period"], stale["evaluationPeriods"], stale["datapointsToAlarm"]) == (300, 2, 2)
    # Database CPU above 80 % on the deployed instance
    cpu = alarms["rds-cpu"].inputs
    (instance,) = dev.of_type("aws:rds/instance:Instance")
    assert cpu["metricName"] == "CPUUtilization" and cpu["threshold"] == 80
    assert cpu["dimensions"] == {"DBInstanceIdentifier": instance.outputs["identifier"]}


def test_on_localstack_a_staleness_signal_that_never_arrives_is_not_an_alarm(local: Deployment) -> None:
    # Given the local stack: LocalStack turns no EMF log line into a metric, so the report
    # function's SecondsSinceLastCompletedFile never reaches its CloudWatch
    stale = _alarms(local)["data-staleness"].inputs
    # Then the alarm still watches this stack's signal
    assert stale["dimensions"] == {"service": "report", "stack": "local"}
    # but missing data leaves it without data instead of raising it (and notifying the
    # alerts topic) ten minutes after every deployment
    assert stale["treatMissingData"] == "missing"


def test_alarm_thresholds_follow_config(tiny_archive: Path) -> None:
    stack = deploy(
        "local",
        tiny_archive,
        {
            "headrace:alarms": {
                "staleness_minutes": 30,
                "oldest_message_seconds": 120,
                "load_oldest_message_seconds": 240,
                "ingest_oldest_message_seconds": 360,
                "error_rate_percent": 5,
            },
            "headrace:functions": {"processor": {"timeout_seconds": 100}},
        },
    )
    alarms = _alarms(stack)
    assert alarms["data-staleness"].inputs["threshold"] == 1800
    # and the report function's signal looks back as far as that threshold
    [report] = [
        f for f in stack.of_type("aws:lambda/function:Function") if f.outputs["name"].endswith("-report")
    ]
    assert report.inputs["environment"]["variables"]["STALENESS_MINUTES"] == "30"
    assert alarms["processing-oldest-message"].inputs["threshold"] == 120
    assert alarms["load-oldest-message"].inputs["threshold"] == 240
    assert alarms["ingest-oldest-message"].inputs["threshold"] == 360
    assert alarms["processor-error-rate"].inputs["threshold"] == 5
    assert alarms["processor-duration-p99"].inputs["threshold"] == 80_000


def test_oldest_message_alarm_waits_out_one_retry_by_default(tiny_archive: Path) -> None:
    # Given the processor's timeout and batching window, and no alarm threshold set
    stack = deploy(
        "local",
        tiny_archive,
        {
            "headrace:alarms": {"oldest_message_seconds": None},
            "headrace:functions": {"processor": {"timeout_seconds": 100, "batching_window_seconds": 3}},
        },
    )
    # Then a message retried once (visible again after 6 x 100 + 3 s) does not raise it
    (queue,) = [q for q in stack.of_type("aws:sqs/queue:Queue") if q.name.endswith("processing")]
    visibility = queue.inputs["visibilityTimeoutSeconds"]
    assert visibility == 603
    assert _alarms(stack)["processing-oldest-message"].inputs["threshold"] == visibility + 900


def test_dashboard_shows_the_pipeline(stack: Deployment) -> None:
    (dashboard,) = stack.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == f"headrace-{stack.stack}"
    body = json.loads(dashboard.input("dashboardBody"))
    metrics = [m for w in body["widgets"] for m in w["properties"]["metrics"]]
    names = {m[1] for m in metrics}
    assert {
        "FilesProcessed",
        "FilesOutOfTime",
        "FilesOutOfMemory",
        "SecondsSinceLastCompletedFile",
        "ApproximateNumberOfMessagesVisible",
        "Errors",
    } <= names
    functions = {m[3] for m in metrics if m[1] == "Errors"}
    assert functions == set(stack.outputs["function_names"].values())
    # and the handlers' metrics of this stack only: every other stack of the account and
    # region publishes the same names under the same namespace and services
    custom = [m for m in metrics if m[0] == "headrace"]
    assert custom and all(m[2:] == ["service", m[3], "stack", stack.stack] for m in custom)
    assert {"LogsFailed", "FilesRetried"} <= names
    assert ("CPUUtilization" in names) is (stack.stack == "dev")


def test_alerts_topic_is_encrypted_with_a_key_cloudwatch_may_use(stack: Deployment) -> None:
    (topic,) = stack.of_type("aws:sns/topic:Topic")
    (key,) = [k for k in stack.of_type("aws:kms/key:Key") if "alerts" in k.name]
    # Then the topic uses its own rotating key...
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    # ...whose policy lets CloudWatch encrypt alarm notifications for this stack's alarms
    # only: this account's, and named with the stack's prefix (every alarm of the stack is)
    region = stack.outputs["region"]
    stack_alarms = {
        "StringEquals": {"aws:SourceAccount": "111122223333"},
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:cloudwatch:{region}:111122223333:alarm:headrace-{stack.stack}-*"
        },
    }
    statements = {s["Sid"]: s for s in key.json_input("policy")["Statement"]}
    cloudwatch = statements["ServiceUseCloudwatch"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert cloudwatch["Condition"] == stack_alarms
    assert not any(a == "kms:*" for s in statements.values() for a in s["Action"])
    # and the topic policy lets those alarms (only) publish, over TLS
    (policy,) = stack.of_type("aws:sns/topicPolicy:TopicPolicy")
    effects = {s["Sid"]: s for s in policy.json_input("policy")["Statement"]}
    publish = effects["CloudWatchAlarmsOfThisStack"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Condition"] == stack_alarms
    assert effects["DenyInsecureTransport"]["Effect"] == "Deny"
    # and the pattern matches every alarm the stack has
    pattern = stack_alarms["ArnLike"]["aws:SourceArn"]
    for alarm in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        arn = f"arn:aws:cloudwatch:{region}:111122223333:alarm:{alarm.inputs['name']}"
        assert fnmatch.fnmatchcase(arn, pattern), arn


def test_the_report_function_uses_the_alerts_key_only_through_sns(stack: Deployment) -> None:
    # Given the report function's role (its publishes to the encrypted alerts topic make SNS
    # generate and decrypt data keys on its behalf)
    report_role = next(
        r
        for r in stack.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name == f"headrace-{stack.stack}-reporting-report-policy"
    )
    statements = report_role.json_input("policy")["Statement"]
    (key,) = [k for k in stack.of_type("aws:kms/key:Key") if "alerts" in k.name]
    # Then its only KMS grant is on the alerts key, and only for requests SNS makes in the
    # stack's region: the function's own code cannot encrypt or decrypt with the key
    kms = [s for s in statements if any(a.startswith("kms:") for a in s["Action"])]
    assert kms == [
        {
            "Sid": "EncryptForAlertsTopic",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": [key.outputs["arn"]],
            "Condition": {"StringEquals": {"kms:ViaService": f"sns.{stack.outputs['region']}.amazonaws.com"}},
        }
    ]


def test_email_subscription_is_optional(dev: Deployment, tiny_archive: Path) -> None:
    assert dev.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    stack = deploy("dev", tiny_archive, {"headrace:reporting": {"alert_email": "ops@example.com"}})
    (subscription,) = stack.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["protocol"] == "email" and subscription.inputs["endpoint"] == "ops@example.com"
    assert subscription.inputs["topic"] == stack.outputs["alerts_topic_arn"]


def test_report_function_runs_daily_and_every_five_minutes(stack: Deployment) -> None:
    prefix = f"headrace-{stack.stack}-reporting-"
    rules = {
        r.name.removeprefix(prefix): r
        for r in stack.of_type("aws:cloudwatch/eventRule:EventRule")
        if r.name.startswith(prefix)
    }
    targets = {
        r.name.removeprefix(prefix): r
        for r in stack.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if r.name.startswith(prefix)
    }
    permissions = {
        r.name.removeprefix(prefix): r
        for r in stack.of_type("aws:lambda/permission:Permission")
        if r.name.startswith(prefix)
    }
    report = stack.outputs["function_names"]["report"]
    # Then the daily schedule comes from config and the signals run every 5 minutes
    expected_daily = "cron(0 6 * * ? *)" if stack.stack == "dev" else "rate(1 hour)"
    assert rules["daily"].inputs["scheduleExpression"] == expected_daily
    assert rules["signals"].inputs["scheduleExpression"] == "rate(5 minutes)"
    # and both invoke the report function, the signals one with {"task": "signals"}
    for task in ("daily", "signals"):
        assert targets[f"{task}-target"].inputs["arn"].endswith(f":function:{report}")
        assert permissions[f"{task}-invoke"].inputs["principal"] == "events.amazonaws.com"
        assert permissions[f"{task}-invoke"].inputs["sourceArn"] == rules[task].outputs["arn"]
    assert json.loads(targets["signals-target"].inputs["input"]) == {"task": "signals"}
    assert targets["daily-target"].inputs.get("input") is None


def _runbook() -> str:
    return (ROOT / "docs" / "operations.md").read_text()


def test_every_alarm_has_a_runbook_entry(dev: Deployment) -> None:
    # Given every alarm of the RDS stack (the local stack's are a subset) and the headings
    # of the runbook, which an operator paged by an alarm looks up by its name
    headings = " ".join(re.findall(r"^### (.*)$", _runbook(), re.M))
    # Then each alarm is named in a heading
    assert sorted(name for name in _alarms(dev) if f"`{name}`" not in headings) == []


def test_the_runbook_says_how_long_each_dlq_alarm_waits_with_the_defaults() -> None:
    # Given the default configuration: a message that keeps failing is received
    # max_receive_count times, each a visibility timeout after the one before, and moves to
    # its DLQ at the receive after the last (so max_receive_count visibility timeouts in all)
    config = StackConfig.model_validate({"environment": "dev", "region": "eu-west-1"})
    consumers = {
        "processing": config.functions.processor,
        "load": config.functions.loader,
        "ingest": config.functions.ingest_worker,
    }
    text = " ".join(_runbook().split())
    for label, consumer in consumers.items():
        minutes = (
            config.queues.max_receive_count
            * visibility_timeout(consumer.timeout_seconds, consumer.batching_window_seconds)
            / 60
        )
        # When the runbook says how long its DLQ alarm waits
        said = re.search(rf"`{label}-dlq-depth` waits for every retry \(about ([\d.]+) (hours|minutes)", text)
        assert said is not None, label
        stated = float(said[1]) * (60 if said[2] == "hours" else 1)
        # Then it is that time, to the minute (the hours to a tenth)
        assert abs(stated - minutes) <= (3 if said[2] == "hours" else 1), (label, stated, minutes)
