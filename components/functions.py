"""Lambda functions: the shared deployment package and a least-privilege function."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .lambda_archive import LambdaArchive
from .policies import (
    VPC_NETWORK_INTERFACE_ACTIONS,
    Allow,
    Statement,
    assume_role_policy,
    check_least_privilege,
    deny_to_function_code,
    identity_policy,
)
from .storage import SecureBucket, SecureBucketArgs

METRICS_NAMESPACE = "headrace"
# Every custom metric carries the stack's name as this dimension (besides Powertools'
# "service"): two stacks in one account and region publish to the same namespace, and
# an alarm or a dashboard of one stack must not see the other's metrics. Each function
# gets the name in STACK_VARIABLE; the handlers set it as a default dimension.
STACK_DIMENSION = "stack"
STACK_VARIABLE = "HEADRACE_STACK"


@dataclass(frozen=True)
class FunctionCode:
    """Where a function's code comes from: an archive uploaded with the function, or an
    object staged in S3 (packages above Lambda's 50 MB direct-upload limit)."""

    source_code_hash: str
    archive: pulumi.Archive | None = None
    s3_bucket: pulumi.Input[str] | None = None
    s3_key: pulumi.Input[str] | None = None
    s3_object_version: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class LambdaPackageArgs:
    archive: LambdaArchive
    noncurrent_days: int = 7
    force_destroy: bool = False


class LambdaPackage(pulumi.ComponentResource):
    """The one deployment package every function runs. Small enough: uploaded with each
    function. Too large for a direct upload: staged once in a private artifacts bucket."""

    def __init__(self, name: str, args: LambdaPackageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:functions:LambdaPackage", name, None, opts)
        archive = args.archive
        self.artifacts: SecureBucket | None = None
        if archive.needs_s3_staging:
            self.artifacts = SecureBucket(
                f"{name}-artifacts",
                SecureBucketArgs(
                    expire_days=None, noncurrent_days=args.noncurrent_days, force_destroy=args.force_destroy
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            staged = aws.s3.BucketObjectv2(
                f"{name}-zip",
                bucket=self.artifacts.bucket.id,
                key=f"lambda/{archive.sha256}.zip",
                source=pulumi.FileAsset(str(archive.path)),
                # The bucket's default encryption applies; the policy requires TLS.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.artifacts.policy]),
            )
            self.code = FunctionCode(
                source_code_hash=archive.source_code_hash,
                s3_bucket=self.artifacts.bucket.id,
                s3_key=staged.key,
                s3_object_version=staged.version_id,
            )
        else:
            self.code = FunctionCode(
                source_code_hash=archive.source_code_hash, archive=pulumi.FileArchive(str(archive.path))
            )
        self.register_outputs(
            {"source_code_hash": archive.source_code_hash, "staged": archive.needs_s3_staging}
        )


@dataclass(frozen=True)
class SqsSource:
    """The queue a function consumes, and how the Lambda service polls it."""

    queue_arn: pulumi.Input[str]
    batch_size: int
    batching_window_seconds: int
    max_concurrency: int | None = None


@dataclass(frozen=True)
class VpcPlacement:
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    security_group_ids: pulumi.Input[Sequence[pulumi.Input[str]]]


@dataclass(frozen=True)
class PipelineFunctionArgs:
    service: str  # POWERTOOLS_SERVICE_NAME and the metrics dimension, e.g. "processor"
    function_name: str  # deployed name
    handler: str
    code: FunctionCode
    runtime: str
    architecture: str
    memory_mb: int
    timeout_seconds: int
    log_retention_days: int
    # The Pulumi stack's name: STACK_VARIABLE, the value of every custom metric's
    # STACK_DIMENSION (the stack's alarms and dashboard select by it).
    stack: str
    log_level: str = "INFO"
    ephemeral_storage_mb: int = 512
    reserved_concurrency: int | None = None
    tracing: bool = True
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # What the function's own code calls; logs, tracing, the queue it consumes and its
    # network interfaces are added here.
    statements: Sequence[Statement] = ()
    sqs_source: SqsSource | None = None
    vpc: VpcPlacement | None = None
    # The function's (unqualified) ARN, arn:<partition>:lambda:<region>:<account>:function:<name>.
    # Required with vpc: the role's policy, written before the function exists, denies the
    # network-interface actions to the code of this function.
    arn: pulumi.Input[str] | None = None
    description: str = ""


def function_statements(args: PipelineFunctionArgs, log_group_arn: pulumi.Input[str]) -> list[Statement]:
    if args.vpc is not None and args.arn is None:
        raise ValueError(
            f"{args.function_name}: a function in a VPC needs its arn (to deny its code the ENI actions)"
        )
    statements: list[Statement] = [
        Allow(
            "WriteOwnLogs",
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            (pulumi.Output.concat(log_group_arn, ":*"),),
        ),
        *args.statements,
    ]
    if args.sqs_source is not None:
        statements.append(
            Allow(
                "ConsumeQueue",
                ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"),
                (args.sqs_source.queue_arn,),
            )
        )
    if args.tracing:
        statements.append(Allow("Tracing", ("xray:PutTraceSegments", "xray:PutTelemetryRecords"), ("*",)))
    if args.vpc is not None and args.arn is not None:
        # The Lambda service creates and deletes the function's network interfaces with its
        # role; the function's own code gets none of it (AWS's lambda:SourceFunctionArn pattern).
        actions = tuple(sorted(VPC_NETWORK_INTERFACE_ACTIONS))
        statements.append(Allow("VpcNetworkInterfaces", actions, ("*",)))
        statements.append(deny_to_function_code("NoNetworkInterfacesFromCode", actions, args.arn))
    return statements


class PipelineFunction(pulumi.ComponentResource):
    """A Lambda function with its own role (only what it uses), its log group (created
    first, with retention) and, for a queue consumer, its event source mapping with
    partial batch responses."""

    def __init__(self, name: str, args: PipelineFunctionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:functions:PipelineFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        check_least_privilege(args.statements)
        if len(args.function_name) > 64:
            raise ValueError(f"function name {args.function_name!r} is longer than Lambda's 64 characters")

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{args.function_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            description=f"headrace {args.service} function",
            opts=child,
        )
        self.statements = function_statements(args, self.log_group.arn)
        self.role_policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=identity_policy(self.statements),
            opts=child,
        )

        environment: dict[str, pulumi.Input[str]] = {
            "POWERTOOLS_SERVICE_NAME": args.service,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": args.log_level,
            STACK_VARIABLE: args.stack,
            **args.environment,
        }
        if not args.tracing:
            environment["POWERTOOLS_TRACE_DISABLED"] = "true"

        code = args.code
        self.function = aws.lambda_.Function(
            name,
            name=args.function_name,
            description=args.description or f"headrace {args.service}",
            role=self.role.arn,
            handler=args.handler,
            runtime=args.runtime,
            architectures=[args.architecture],
            memory_size=args.memory_mb,
            timeout=args.timeout_seconds,
            ephemeral_storage=aws.lambda_.FunctionEphemeralStorageArgs(size=args.ephemeral_storage_mb),
            reserved_concurrent_executions=args.reserved_concurrency,
            code=code.archive,
            s3_bucket=code.s3_bucket,
            s3_key=code.s3_key,
            s3_object_version=code.s3_object_version,
            source_code_hash=code.source_code_hash,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(
                mode="Active" if args.tracing else "PassThrough"
            ),
            vpc_config=(
                aws.lambda_.FunctionVpcConfigArgs(
                    subnet_ids=args.vpc.subnet_ids, security_group_ids=args.vpc.security_group_ids
                )
                if args.vpc is not None
                else None
            ),
            # Lambda checks the role's permissions (network interfaces) at creation, and
            # must not create the log group itself (it would have no retention).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group, self.role_policy]),
        )

        self.event_source_mapping: aws.lambda_.EventSourceMapping | None = None
        source = args.sqs_source
        if source is not None:
            self.event_source_mapping = aws.lambda_.EventSourceMapping(
                f"{name}-sqs",
                event_source_arn=source.queue_arn,
                function_name=self.function.arn,
                batch_size=source.batch_size,
                maximum_batching_window_in_seconds=source.batching_window_seconds,
                # Only the failed records of a batch return to the queue.
                function_response_types=["ReportBatchItemFailures"],
                scaling_config=(
                    aws.lambda_.EventSourceMappingScalingConfigArgs(
                        maximum_concurrency=source.max_concurrency
                    )
                    if source.max_concurrency is not None
                    else None
                ),
                # The service polls with the function's role: it needs the queue grants first.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policy]),
            )

        self.name: pulumi.Output[str] = self.function.name
        self.arn: pulumi.Output[str] = self.function.arn
        self.invoke_arn: pulumi.Output[str] = self.function.invoke_arn
        self.timeout_seconds = args.timeout_seconds
        self.register_outputs({"name": self.name, "arn": self.arn})
