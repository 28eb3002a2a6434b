"""Reporting: the alerts topic, the report function and its two schedules."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .alarms import alarm_arn_pattern
from .functions import PipelineFunction, PipelineFunctionArgs
from .policies import (
    Allow,
    deny_insecure_transport,
    kms_key_policy,
    resource_policy,
    service_source_condition,
)

# The report function's "signals" task runs this often and emits
# SecondsSinceLastCompletedFile (docs/contracts.md); the staleness alarm watches it.
SIGNALS_SCHEDULE = "rate(5 minutes)"
SIGNALS_INPUT = json.dumps({"task": "signals"})


@dataclass(frozen=True)
class AlertsTopicArgs:
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]
    region: str
    # The prefix every alarm of the stack has in its name (components/alarms.py): only
    # those alarms may publish, and use the key.
    alarm_name_prefix: str
    # The partition's DNS suffix (amazonaws.com; amazonaws.com.cn in China): SNS's endpoint
    # in kms:ViaService is sns.<region>.<dns_suffix>.
    dns_suffix: pulumi.Input[str] = "amazonaws.com"
    email: str | None = None
    key_deletion_window_days: int = 30


class AlertsTopic(pulumi.ComponentResource):
    """An SNS topic encrypted with its own KMS key (CloudWatch alarms cannot publish to a
    topic under the AWS managed SNS key), publishable by this stack's CloudWatch alarms
    (by name prefix) and IAM principals over TLS; optionally an e-mail subscription."""

    def __init__(self, name: str, args: AlertsTopicArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:reporting:AlertsTopic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # CloudWatch sets aws:SourceArn to the alarm's ARN when it publishes (and SNS passes
        # it on to KMS): the stack's alarms only, not any alarm of the account.
        alarms = alarm_arn_pattern(args.partition, args.region, args.account_id, args.alarm_name_prefix)

        self.key = aws.kms.Key(
            f"{name}-key",
            description="headrace alerts topic",
            enable_key_rotation=True,
            deletion_window_in_days=args.key_deletion_window_days,
            policy=kms_key_policy(
                args.partition, args.account_id, service_principals={"cloudwatch.amazonaws.com": alarms}
            ),
            opts=child,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}", target_key_id=self.key.key_id, opts=child)
        self.topic = aws.sns.Topic(name, kms_master_key_id=self.key.arn, opts=child)
        self.policy = aws.sns.TopicPolicy(
            f"{name}-policy",
            arn=self.topic.arn,
            policy=resource_policy(
                [
                    {
                        "Sid": "CloudWatchAlarmsOfThisStack",
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudwatch.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": self.topic.arn,
                        "Condition": service_source_condition(args.account_id, alarms),
                    },
                    deny_insecure_transport("sns:Publish", [self.topic.arn]),
                ]
            ),
            opts=child,
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=self.topic.arn, protocol="email", endpoint=args.email, opts=child
            )
        self.arn: pulumi.Output[str] = self.topic.arn
        self.key_arn: pulumi.Output[str] = self.key.arn
        self.register_outputs({"arn": self.arn})


@dataclass(frozen=True)
class ReportingArgs:
    # The report function without its alerts grants (added here); its environment must
    # leave ALERTS_TOPIC_ARN to this component.
    function: PipelineFunctionArgs
    schedule: str
    alerts: AlertsTopicArgs


class Reporting(pulumi.ComponentResource):
    """The alerts topic, the report function (which may publish to it) and the two
    schedules that invoke it: the daily report and the five-minute signals."""

    def __init__(self, name: str, args: ReportingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:reporting:Reporting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.alerts = AlertsTopic(f"{name}-alerts", args.alerts, opts=child)
        function_args = dataclasses.replace(
            args.function,
            environment={**args.function.environment, "ALERTS_TOPIC_ARN": self.alerts.arn},
            statements=[
                *args.function.statements,
                Allow("PublishAlerts", ("sns:Publish",), (self.alerts.arn,)),
                # Publishing to an encrypted topic encrypts with its key: SNS does, on the
                # function's behalf. The function itself may not use the key directly.
                Allow(
                    "EncryptForAlertsTopic",
                    ("kms:GenerateDataKey", "kms:Decrypt"),
                    (self.alerts.key_arn,),
                    condition={
                        "StringEquals": {
                            "kms:ViaService": pulumi.Output.concat(
                                "sns.", args.alerts.region, ".", args.alerts.dns_suffix
                            )
                        }
                    },
                ),
            ],
        )
        self.function = PipelineFunction(f"{name}-report", function_args, opts=child)

        self.schedules: dict[str, aws.cloudwatch.EventRule] = {}
        for task, expression, payload in (
            # The daily report gets EventBridge's own "Scheduled Event" (its time is the day).
            ("daily", args.schedule, None),
            ("signals", SIGNALS_SCHEDULE, SIGNALS_INPUT),
        ):
            rule = aws.cloudwatch.EventRule(
                f"{name}-{task}",
                description=f"headrace report: {task}",
                schedule_expression=expression,
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{task}-target",
                rule=rule.name,
                arn=self.function.arn,
                input=payload,
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-{task}-invoke",
                action="lambda:InvokeFunction",
                function=self.function.name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=child,
            )
            self.schedules[task] = rule

        self.register_outputs({"alerts_topic_arn": self.alerts.arn, "function_name": self.function.name})
