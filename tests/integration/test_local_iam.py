"""The embedded emulator's IAM enforcement (headrace.local.iam), against a real emulator
process: what it allows, what it denies, and how a denial reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from components.policies import VPC_NETWORK_INTERFACE_ACTIONS, Allow, deny_to_function_code
from headrace.local.emulator import ACCOUNT_ID, Emulator, free_port
from headrace.local.iam import (
    ADMIN_KEY,
    ADMIN_STATEMENT,
    ADMIN_USER,
    LAMBDA_SERVICE_STATEMENT,
    LAMBDA_SERVICE_USER,
    RoleSessions,
    create_user,
)

REGION = "us-east-1"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
BUCKET = "iam-test-bucket"


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}"


# What the function role in these tests may do.
GRANTS = [
    {
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:Query"],
        "Resource": [arn("dynamodb", "table/granted")],
    },
    {
        "Effect": "Allow",
        "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
        "Resource": [arn("sqs", "granted-queue")],
    },
    {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"arn:aws:s3:::{BUCKET}/*"]},
    {"Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": [f"arn:aws:s3:::{BUCKET}/mine/*"]},
]


class World:
    def __init__(self, emulator: Emulator):
        self.endpoint = emulator.endpoint
        self.admin = self.client_factory(Credentials(*ADMIN_KEY))
        iam = self.admin("iam")
        create_user(iam, ADMIN_USER, ADMIN_STATEMENT)
        self.roles = RoleSessions(
            self.client_factory(create_user(iam, LAMBDA_SERVICE_USER, LAMBDA_SERVICE_STATEMENT))("sts")
        )
        ddb = self.admin("dynamodb")
        for table in ("granted", "other"):
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": "k", "AttributeType": "S"},
                    {"AttributeName": "g", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by_g",
                        "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        self.queue_url = self.admin("sqs").create_queue(QueueName="granted-queue")["QueueUrl"]
        self.admin("s3").create_bucket(Bucket=BUCKET)
        self.role_arn = iam.create_role(
            RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST)
        )["Role"]["Arn"]
        self.grant(GRANTS)
        emulator.enforce_iam()
        self.function = self.client_factory(self.roles.credentials(self.role_arn, "fn"))

    def grant(self, statements: list[dict[str, Any]]) -> None:
        self.admin("iam").put_role_policy(
            RoleName="fn-role",
            PolicyName="fn",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )

    def client_factory(self, credentials: Credentials) -> Callable[[str], Any]:
        return lambda service: boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
        )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    emulator = Emulator(port=free_port())
    emulator.start()
    try:
        yield World(emulator)
    finally:
        emulator.stop()


def denied(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as error:
        call()
    assert error.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException"), error.value
    return str(error.value)


def test_the_administrator_uses_the_well_known_key(world):
    keys = world.admin("iam").list_access_keys(UserName=ADMIN_USER)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [ADMIN_KEY[0]]
    world.admin("dynamodb").get_item(TableName="other", Key={"k": {"S": "x"}})


def test_unknown_credentials_are_refused(world):
    stranger = world.client_factory(Credentials("AKIAUNKNOWN000000000", "secret"))
    with pytest.raises(ClientError) as error:
        stranger("sqs").list_queues()  # a JSON protocol
    assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as error:
        stranger("sns").list_topics()  # a query (XML) protocol
    assert error.value.response["Error"]["Code"] == "InvalidClientTokenId"
    forged = world.client_factory(Credentials(ADMIN_KEY[0], "not-the-secret"))
    with pytest.raises(ClientError) as error:
        forged("dynamodb").list_tables()
    assert error.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_only_the_lambda_service_may_assume_a_lambda_role(world):
    message = denied(lambda: world.admin("sts").assume_role(RoleArn=world.role_arn, RoleSessionName="me"))
    assert f'sts:AssumeRole on resource: "{world.role_arn}"' in message
    assert world.function("sts").get_caller_identity()["Arn"].endswith(":assumed-role/fn-role/fn")


def test_dynamodb_grants_are_checked_against_the_table_and_its_indexes(world):
    world.function("dynamodb").get_item(TableName="granted", Key={"k": {"S": "x"}})
    message = denied(lambda: world.function("dynamodb").get_item(TableName="other", Key={"k": {"S": "x"}}))
    assert message.endswith(
        f'is not authorized to perform: dynamodb:GetItem on resource: "{arn("dynamodb", "table/other")}" '
        "because no identity-based policy allows the dynamodb:GetItem action"
    )
    query = {"KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "x"}}}
    message = denied(lambda: world.function("dynamodb").query(TableName="granted", IndexName="by_g", **query))
    assert arn("dynamodb", "table/granted/index/by_g") in message


def test_batch_operations_need_their_base_action(world):
    sent = world.function("sqs").send_message_batch(
        QueueUrl=world.queue_url, Entries=[{"Id": "1", "MessageBody": "a"}]
    )
    assert [e["Id"] for e in sent["Successful"]] == ["1"]
    assert world.function("sqs").get_queue_url(QueueName="granted-queue")["QueueUrl"] == world.queue_url
    message = denied(lambda: world.function("sqs").receive_message(QueueUrl=world.queue_url))
    assert f'sqs:ReceiveMessage on resource: "{arn("sqs", "granted-queue")}"' in message


def test_message_move_tasks_are_checked_against_their_source_queue(world):
    # Given two dead-letter queues, and a role that may list the move tasks of one of them
    sqs = world.admin("sqs")
    urls = []
    for name in ("mine", "theirs"):
        urls.append(sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"])
        redrive = {"deadLetterTargetArn": arn("sqs", f"{name}-dlq"), "maxReceiveCount": 5}
        urls.append(
            sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)})["QueueUrl"]
        )
    grant = {"Effect": "Allow", "Action": ["sqs:ListMessageMoveTasks"], "Resource": [arn("sqs", "mine-dlq")]}
    world.grant([*GRANTS, grant])
    try:
        # Then listing its tasks (the queue named by SourceArn) passes IAM, as on AWS (moto has
        # no move tasks: `headrace dlq redrive` then moves the messages itself)
        with pytest.raises(ClientError) as unsupported:
            world.function("sqs").list_message_move_tasks(SourceArn=arn("sqs", "mine-dlq"))
        assert unsupported.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        # and the other's is refused, naming that queue rather than "*"
        theirs = arn("sqs", "theirs-dlq")
        message = denied(lambda: world.function("sqs").list_message_move_tasks(SourceArn=theirs))
        assert f'sqs:ListMessageMoveTasks on resource: "{theirs}"' in message
    finally:
        world.grant(GRANTS)
        for url in urls:
            sqs.delete_queue(QueueUrl=url)


def test_s3_denials_name_action_and_object_and_delete_objects_checks_every_key(world):
    s3 = world.function("s3")
    s3.put_object(Bucket=BUCKET, Key="mine/a", Body=b"1")
    s3.put_object(Bucket=BUCKET, Key="theirs/b", Body=b"2")
    message = denied(lambda: s3.get_object(Bucket=BUCKET, Key="mine/a"))
    assert (
        f'is not authorized to perform: s3:GetObject on resource: "arn:aws:s3:::{BUCKET}/mine/a"' in message
    )
    # moto alone would check the bucket only, and on a denial delete the keys anyway
    message = denied(
        lambda: s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "mine/a"}, {"Key": "theirs/b"}]})
    )
    assert f"arn:aws:s3:::{BUCKET}/theirs/b" in message
    keys = [o["Key"] for o in world.admin("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert "theirs/b" in keys
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "mine/a"}]})


def test_an_allow_with_a_condition_never_applies(world):
    conditional = {
        "Effect": "Allow",
        "Action": "dynamodb:GetItem",
        "Resource": arn("dynamodb", "table/other"),
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": "data"}},
    }
    world.grant([*GRANTS, conditional])
    try:
        # moto alone would ignore the condition and allow
        world.function("dynamodb").get_item(TableName="granted", Key={"k": {"S": "x"}})
        denied(lambda: world.function("dynamodb").get_item(TableName="other", Key={"k": {"S": "x"}}))
    finally:
        world.grant(GRANTS)


def test_a_list_bucket_allow_on_s3_prefix_is_evaluated_against_the_requests_prefix(world):
    # (the query policy's listing grants: taken as never applying, `headrace query` could
    # not run locally under the policy its docs tell analysts to attach)
    conditional = {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{BUCKET}",
        "Condition": {"StringLike": {"s3:prefix": ["parquet/*", "summaries/*"]}},
    }
    world.grant([*GRANTS, conditional])
    try:
        s3 = world.function("s3")
        s3.list_objects_v2(Bucket=BUCKET, Prefix="parquet/")
        s3.list_objects_v2(Bucket=BUCKET, Prefix="summaries/dataset=x/", Delimiter="/")
        assert f'"arn:aws:s3:::{BUCKET}"' in denied(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="raw/"))
        denied(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="Parquet/"))  # case-sensitive, as on AWS
        denied(lambda: s3.list_objects_v2(Bucket=BUCKET))  # no prefix: the key is absent, nothing matches
    finally:
        world.grant(GRANTS)


def test_a_deny_with_a_condition_always_applies(world):
    conditional = {
        "Effect": "Deny",
        "Action": "dynamodb:GetItem",
        "Resource": arn("dynamodb", "table/granted"),
        "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    }
    world.grant([*GRANTS, conditional])
    try:
        message = denied(
            lambda: world.function("dynamodb").get_item(TableName="granted", Key={"k": {"S": "x"}})
        )
        assert message.endswith("with an explicit deny in an identity-based policy")
    finally:
        world.grant(GRANTS)


def test_a_vpc_functions_network_interface_deny_keeps_its_other_grants(world):
    # Given the program's statements for a function in a VPC: the ENI grants for the Lambda
    # service, denied to the function's code on lambda:SourceFunctionArn (a key moto never
    # supplies: the Deny is taken as always applying)
    actions = tuple(sorted(VPC_NETWORK_INTERFACE_ACTIONS))
    function_arn = arn("lambda", "function:fn")
    vpc = [
        Allow("VpcNetworkInterfaces", actions, ("*",)).render(),
        deny_to_function_code("NoNetworkInterfacesFromCode", actions, function_arn).render(),
    ]
    world.grant([*GRANTS, *vpc])
    try:
        # Then the function's credentials cannot touch network interfaces
        message = denied(lambda: world.function("ec2").describe_network_interfaces())
        assert "ec2:DescribeNetworkInterfaces" in message
        assert message.endswith("with an explicit deny in an identity-based policy")
        # and everything else it is granted still works
        world.function("dynamodb").get_item(TableName="granted", Key={"k": {"S": "x"}})
        world.function("sqs").send_message(QueueUrl=world.queue_url, MessageBody="{}")
    finally:
        world.grant(GRANTS)


# ------------------------------------------------------------------ presigned URLs
def presign(world: World, credentials: Credentials, key: str, version: str = "s3v4", **kwargs: Any) -> str:
    """A presigned GET of ``key``, as the report Lambda makes its links (``version``: s3v4; s3 for SigV2)."""
    s3 = boto3.client(
        "s3",
        endpoint_url=world.endpoint,
        region_name=REGION,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=Config(signature_version=version),
    )
    return str(s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, **kwargs))


def fetch(url: str, method: str = "GET") -> tuple[int, bytes]:
    """What a browser or ``curl`` gets: no credentials but the URL's."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def s3_error(body: bytes) -> tuple[str, str]:
    error = ET.fromstring(body)
    return error.findtext("Code") or "", error.findtext("Message") or ""


REPORT_KEY = "reports/2026-11-23/report +1.html"  # a space and a plus: encoded in the path


@pytest.fixture
def report(world):
    world.admin("s3").put_object(Bucket=BUCKET, Key=REPORT_KEY, Body=b"<p>report</p>")
    yield REPORT_KEY
    world.admin("s3").delete_object(Bucket=BUCKET, Key=REPORT_KEY)


def test_a_presigned_url_is_answered_as_its_signer_may_read(world, report):
    admin = Credentials(*ADMIN_KEY)
    for version in ("s3v4", "s3"):  # SigV4, and SigV2 (AWSAccessKeyId, Signature, Expires)
        assert fetch(presign(world, admin, report, version)) == (200, b"<p>report</p>"), version
    # a role's link carries its session token; the role may not read the bucket yet
    role = world.roles.credentials(world.role_arn, "fn")
    status, body = fetch(presign(world, role, report))
    assert status == 403
    code, message = s3_error(body)
    assert code == "AccessDenied"
    assert message.startswith("User: arn:aws:sts::123456789012:assumed-role/fn-role/fn is not authorized")
    assert f's3:GetObject on resource: "arn:aws:s3:::{BUCKET}/{report}"' in message
    read = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/reports/*"}
    world.grant([*GRANTS, read])
    try:
        for version in ("s3v4", "s3"):
            assert fetch(presign(world, role, report, version)) == (200, b"<p>report</p>"), version
    finally:
        world.grant(GRANTS)


def test_a_request_without_credentials_is_refused_as_s3_refuses_it(world, report):
    path = urllib.request.quote(f"/{BUCKET}/{report}")
    for url in (
        f"{world.endpoint}{path}",  # an object that exists (moto alone: 403 with no body)
        f"{world.endpoint}/{BUCKET}/reports/absent.html",
        f"{world.endpoint}/{BUCKET}?list-type=2",
        f"{world.endpoint}/",  # moto alone: a server error (500) for all three
    ):
        status, body = fetch(url)
        assert (status, s3_error(body)) == (403, ("AccessDenied", "Access Denied")), url
    assert fetch(f"{world.endpoint}{path}", method="HEAD")[0] == 403


def test_an_expired_forged_or_malformed_presigned_url_is_refused(world, report, monkeypatch):
    admin = Credentials(*ADMIN_KEY)
    url = presign(world, admin, report)

    def refused(url: str) -> tuple[int, str, str]:
        status, body = fetch(url)
        return (status, *s3_error(body))

    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert refused(forged)[:2] == (403, "SignatureDoesNotMatch")
    other_key = url.replace(urllib.request.quote(report), "reports/other.html")
    assert refused(other_key)[:2] == (403, "SignatureDoesNotMatch")
    stranger = presign(world, Credentials("AKIAUNKNOWN000000000", "secret"), report)
    assert refused(stranger)[:2] == (403, "InvalidAccessKeyId")
    no_expiry = "&".join(part for part in url.split("&") if not part.startswith("X-Amz-Expires="))
    assert refused(no_expiry)[:2] == (400, "AuthorizationQueryParametersError")
    assert refused(presign(world, admin, report, ExpiresIn=604_801))[:2] == (
        400,
        "AuthorizationQueryParametersError",
    )
    assert refused(presign(world, admin, report, "s3", ExpiresIn=-60)) == (
        403,
        "AccessDenied",
        "Request has expired",
    )
    # signed two hours ago for one minute
    two_hours_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: two_hours_ago)
    assert refused(presign(world, admin, report, ExpiresIn=60)) == (
        403,
        "AccessDenied",
        "Request has expired",
    )


def test_a_request_without_a_body_is_verified_with_an_empty_payload(world):
    # Given a function (no executor runs it here: the emulator alone)
    awslambda = world.admin("lambda")
    awslambda.create_function(
        FunctionName="bodiless",
        Runtime="python3.12",
        Role=world.role_arn,
        Handler="handler.main",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # an empty zip archive
    )
    # When it is invoked without a payload: a POST with no body (`aws lambda invoke` without
    # --payload), which moto verified against its parsed parameters instead
    with pytest.raises(ClientError) as error:
        awslambda.invoke(FunctionName="bodiless")
    # Then the signature holds: the refusal is the missing executor's, not SignatureDoesNotMatch
    assert error.value.response["Error"]["Code"] == "NotImplemented", error.value


def test_a_lambda_invoke_denied_is_an_access_denied_exception_the_sdk_can_read(world):
    # Given a function the role may not invoke (its policy grants no lambda:InvokeFunction)
    world.admin("lambda").create_function(
        FunctionName="not-yours",
        Runtime="python3.12",
        Role=world.role_arn,
        Handler="handler.main",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # an empty zip archive
    )
    # When the role invokes it (a binary payload: no JSON content type), and lists functions
    awslambda = world.function("lambda")
    for call in (
        lambda: awslambda.invoke(FunctionName="not-yours", Payload=b"{}"),
        lambda: awslambda.list_functions(),
    ):
        with pytest.raises(ClientError) as error:
            call()
        # Then the SDK reads Lambda's error, naming what was denied (moto's XML read as "403")
        assert error.value.response["Error"]["Code"] == "AccessDeniedException", error.value
        assert "is not authorized to perform: lambda:" in error.value.response["Error"]["Message"]


def test_glue_partition_writes_are_checked_against_their_table(world):
    # Given two tables of one database, and a role that may register partitions of one
    glue = world.admin("glue")
    glue.create_database(DatabaseInput={"Name": "lake"})
    for table in ("mine", "theirs"):
        glue.create_table(
            DatabaseName="lake",
            TableInput={"Name": table, "PartitionKeys": [{"Name": "day", "Type": "string"}]},
        )
    resources = [arn("glue", "catalog"), arn("glue", "database/lake"), arn("glue", "table/lake/mine")]
    world.grant([*GRANTS, {"Effect": "Allow", "Action": ["glue:CreatePartition"], "Resource": resources}])
    try:
        partition = {"Values": ["2026-12-07"], "StorageDescriptor": {"Location": "s3://b/x/"}}
        # Then its table takes one; the other (named by TableName, as CreatePartition names
        # it) is refused with the table's ARN, as AWS checks it
        world.function("glue").create_partition(
            DatabaseName="lake", TableName="mine", PartitionInput=partition
        )
        message = denied(
            lambda: world.function("glue").create_partition(
                DatabaseName="lake", TableName="theirs", PartitionInput=partition
            )
        )
        assert f'glue:CreatePartition on resource: "{arn("glue", "table/lake/theirs")}"' in message
    finally:
        world.grant(GRANTS)
