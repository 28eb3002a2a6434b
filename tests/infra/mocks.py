"""Pulumi mocks for the infra tests: every resource gets the attributes AWS would compute
(ARN, name, URL, ...), data sources answer as a fixed account, and every registration is
recorded so tests can assert on the inputs the program sent."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

ACCOUNT = "111122223333"
PARTITION = "aws"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
# A Local Zone the account opted in to: DescribeAvailabilityZones (and the data source)
# lists it with the region's Availability Zones unless filtered by opt-in-status, and its
# name sorts before theirs.
LOCAL_ZONE = "eu-west-1-lcl-1a"


def _only_availability_zones(args: dict[str, Any]) -> bool:
    """Whether a getAvailabilityZones call keeps only the region's Availability Zones."""
    return any(
        f.get("name") == "opt-in-status" and list(f.get("values", [])) == ["opt-in-not-required"]
        for f in args.get("filters") or []
    )


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]  # as sent, secrets still wrapped (see is_secret)
    outputs: dict[str, Any]
    custom: bool
    provider: str  # reference of the provider the resource was registered with
    id: str = ""
    # Resource options the engine acts on (RecordingMonitor): a protected resource cannot be
    # deleted or replaced; one retained on delete is left in the account when deleted.
    protect: bool = False
    retain_on_delete: bool = False
    urn: str = ""  # as in the stack's state

    def input(self, key: str) -> Any:
        """An input with secret wrappers removed."""
        return unwrap(self.inputs.get(key))

    def json_input(self, key: str) -> Any:
        return json.loads(self.input(key))


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping what Mocks.new_resource is not given, by (type, name):
    each registration's protect and retainOnDelete, and its URN as the engine writes it in
    a stack's state (the mock's URNs name only the parent's own type, not the whole chain of
    its ancestors' types the engine's do)."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.options: dict[tuple[str, str], tuple[bool, bool]] = {}
        self.engine_urns: dict[tuple[str, str], str] = {}
        self._types: dict[str, str] = {}  # mock URN -> the engine's qualified type

    def RegisterResource(self, request: Any) -> Any:
        key = (request.type, request.name)
        self.options[key] = (bool(request.protect), bool(request.retainOnDelete))
        if request.type != "pulumi:pulumi:Stack":  # the stack's type qualifies no child's
            parent = self._types.get(request.parent)
            qualified = f"{parent}${request.type}" if parent else request.type
            self._types[self.make_urn(request.parent, request.type, request.name)] = qualified
            self.engine_urns[key] = "::".join(
                ("urn:pulumi:" + pulumi.get_stack(), pulumi.get_project(), qualified, request.name)
            )
        return super().RegisterResource(request)

    def annotate(self, resources: list[Registered]) -> None:
        for resource in resources:
            key = (resource.type, resource.name)
            resource.protect, resource.retain_on_delete = self.options[key]
            resource.urn = self.engine_urns.get(key, "")


# How a secret value reaches Mocks.new_resource: wrapped with the engine's signature.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    """The value with every secret wrapper removed (at any depth)."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def _suffix(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:7]


@dataclass
class PipelineMocks(pulumi.runtime.Mocks):
    region: str = "eu-west-1"
    resources: list[Registered] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ resources
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        outputs = unwrap(inputs)
        kind = args.typ
        physical = inputs.get("name") or f"{args.name}-{_suffix(args.name)}"
        region, account = self.region, ACCOUNT
        resource_id = physical
        short = kind.rsplit(":", 1)[-1]

        if kind == "aws:s3/bucket:Bucket":
            outputs["bucket"] = physical
            outputs["arn"] = f"arn:aws:s3:::{physical}"
        elif kind == "aws:sqs/queue:Queue":
            outputs["name"] = physical
            outputs["arn"] = f"arn:aws:sqs:{region}:{account}:{physical}"
            outputs["url"] = resource_id = f"https://sqs.{region}.amazonaws.com/{account}/{physical}"
        elif kind == "aws:dynamodb/table:Table":
            outputs["name"] = physical
            outputs["arn"] = f"arn:aws:dynamodb:{region}:{account}:table/{physical}"
        elif kind == "aws:lambda/function:Function":
            arn = f"arn:aws:lambda:{region}:{account}:function:{physical}"
            outputs.update(name=physical, arn=arn)
            outputs["invokeArn"] = (
                f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations"
            )
        elif kind in ("aws:cloudwatch/eventBus:EventBus",):
            outputs["name"] = physical
            outputs["arn"] = f"arn:aws:events:{region}:{account}:event-bus/{physical}"
        elif kind == "aws:cloudwatch/eventRule:EventRule":
            outputs["name"] = physical
            bus = inputs.get("eventBusName")
            path = f"{bus}/{physical}" if bus else physical
            outputs["arn"] = f"arn:aws:events:{region}:{account}:rule/{path}"
        elif kind == "aws:cloudwatch/logGroup:LogGroup":
            outputs["name"] = physical
            outputs["arn"] = f"arn:aws:logs:{region}:{account}:log-group:{physical}"
        elif kind == "aws:iam/role:Role":
            outputs["name"] = physical
            outputs["arn"] = f"arn:aws:iam::{account}:role/{physical}"
        elif kind == "aws:kms/key:Key":
            key_id = resource_id = f"{_suffix(args.name)}-key"
            outputs["keyId"] = key_id
            outputs["arn"] = f"arn:aws:kms:{region}:{account}:key/{key_id}"
        elif kind == "aws:sns/topic:Topic":
            outputs["name"] = physical
            outputs["arn"] = resource_id = f"arn:aws:sns:{region}:{account}:{physical}"
        elif kind == "aws:secretsmanager/secret:Secret":
            outputs["name"] = physical
            outputs["arn"] = resource_id = (
                f"arn:aws:secretsmanager:{region}:{account}:secret:{physical}-AbCdEf"
            )
        elif kind == "aws:rds/instance:Instance":
            outputs["identifier"] = physical
            outputs["address"] = f"{physical}.abc123.{region}.rds.amazonaws.com"
            outputs["port"] = inputs.get("port", 5432)
            outputs["arn"] = f"arn:aws:rds:{region}:{account}:db:{physical}"
        elif kind == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "Mock" + _suffix(args.name) * 4
        elif kind == "random:index/randomId:RandomId":
            outputs["hex"] = _suffix(args.name) + "0"
        elif kind == "aws:apigatewayv2/api:Api":
            api_id = resource_id = _suffix(args.name)
            outputs["apiEndpoint"] = f"https://{api_id}.execute-api.{region}.amazonaws.com"
            outputs["executionArn"] = f"arn:aws:execute-api:{region}:{account}:{api_id}"
        elif kind == "aws:lambda/functionUrl:FunctionUrl":
            outputs["functionUrl"] = f"https://{_suffix(args.name)}.lambda-url.{region}.on.aws/"
        elif kind == "aws:ec2/vpcEndpoint:VpcEndpoint":
            outputs["prefixListId"] = f"pl-{_suffix(args.name)}"
        elif kind == "aws:s3/bucketObjectv2:BucketObjectv2":
            outputs["versionId"] = "v1"
        elif kind == "aws:secretsmanager/secretVersion:SecretVersion":
            outputs["versionId"] = f"{_suffix(args.name)}-version"
        outputs.setdefault("arn", f"arn:aws:mock:{region}:{account}:{short.lower()}/{physical}")
        outputs.setdefault("name", physical)
        if not args.custom:
            outputs = {}
        self.resources.append(
            Registered(
                kind,
                args.name,
                inputs,
                outputs,
                custom=bool(args.custom),
                provider=args.provider or "",
                id=resource_id,
            )
        )
        return f"{resource_id}", outputs

    # ------------------------------------------------------------------ data sources
    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT,
            }, []
        if args.token == "aws:index/getPartition:getPartition":
            return {
                "partition": PARTITION,
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": PARTITION,
            }, []
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names, ids = ZONES, [f"euw1-az{i}" for i in range(1, 4)]
            if not _only_availability_zones(unwrap(dict(args.args))):
                names, ids = [LOCAL_ZONE, *names], ["euw1-lcl1-az1", *ids]
            return {"names": names, "zoneIds": ids, "id": self.region}, []
        raise NotImplementedError(
            f"unexpected data source {args.token}: {json.dumps(args.args, default=str)}"
        )
