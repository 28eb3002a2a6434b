"""IAM enforcement in the embedded emulator: the program's own policies, checked on every call.

Once the runtime has deployed the program it switches moto's request authorization on
(``POST /moto-api/reset-auth`` with ``0``): from then on every request must be signed by a
known identity and is checked against that identity's policies. Three identities exist:

- ``headrace-admin``: the administrator the CLI, the demo and the tests act as;
- ``headrace-lambda-service``: the executor, playing the Lambda service — it may only
  assume roles whose trust policy names ``lambda.amazonaws.com``;
- each function's execution role, assumed by the executor for the function's sandboxes and
  for its event source mappings' queue polling (on AWS, pollers use the execution role too).

moto's checks are patched where they would not match AWS for this program
(:func:`patch_authorization`, applied by ``motoserver``):

1. Resources. moto checks S3, SQS, IAM and STS requests against the resource they name,
   every other service against ``"*"`` — a grant scoped to a table would never match. Here
   DynamoDB, Secrets Manager, SNS, EventBridge, KMS and Glue requests, and SQS requests
   naming a queue by ``QueueName``, are checked against the ARNs they touch: every table of
   a batch, the index a query reads, a Glue table's catalog, database and table (as AWS
   does). Any other service is still checked against ``"*"``: stricter, never laxer.
2. S3 ``DeleteObjects``: moto checks the bucket, not the keys, and when denied deletes the
   keys anyway. Here every key is checked, and a denied key fails the request (AWS answers
   200 with a per-key ``AccessDenied`` instead; the handlers treat both as a failure).
3. Actions and answers. A batch operation needs its base action (``SendMessageBatch``
   needs ``sqs:SendMessage``; :data:`ACTION_ALIASES`). A denial says what was denied, in
   AWS's words — ``User: <arn> is not authorized to perform: <action> on resource: <arn>
   because no identity-based policy allows the <action> action`` — where moto names only
   the action, or for S3 nothing; JSON and REST-JSON clients (Lambda's, whose Invoke has
   no JSON content type) get it (and refused credentials or signatures) as JSON, which
   they can parse. A bodiless request is verified with an empty
   payload (moto signs its parsed parameters, so e.g. Lambda's ListFunctions, or an Invoke
   without a payload, never verified).
4. Trust policies: moto compares ``AWS`` principals only (a ``Service`` principal raises).
   Here the Lambda service principal matches the executor's identity, and nothing else.
5. Conditions: moto supplies no condition keys to identity policies and ignores their
   conditions. Here an Allow statement whose condition is ``StringEquals``/``StringLike`` on
   ``s3:prefix`` is evaluated (the ``prefix`` of a ListObjects request; a listing without
   one does not match, as on AWS: :func:`condition_holds`); any other statement with a
   condition is taken in the direction that denies: an Allow never applies, a Deny always
   does — stricter than AWS, never laxer, so whatever works locally is allowed on AWS too.
   The deploy step lists each such statement (``deploy.EmulatorMocks.note_conditions``).
6. The administrator's access key is ``test`` / ``test`` — the credentials LocalStack users
   already have configured — so the AWS CLI and boto3 work against the endpoint unchanged.
7. S3 requests without an ``Authorization`` header. moto's checks read only that header, so
   a presigned URL (the daily report's link) and an unsigned request failed with a server
   error (500). Here a presigned request is authorized as the access key in its query string
   (:func:`query_auth`): SigV4 (``X-Amz-Credential``, ``X-Amz-Signature``; a role session's
   ``X-Amz-Security-Token``) and SigV2 (``AWSAccessKeyId``, ``Signature``, ``Expires``), its
   signature verified as botocore computes it, its policies checked as for a signed request.
   An expired URL is refused as AWS refuses it (403 ``AccessDenied``, "Request has
   expired"), malformed query parameters too (400 ``AuthorizationQueryParametersError``;
   SigV2: 403), and a request with neither header nor query authentication gets 403
   ``AccessDenied`` (anonymous access: no bucket policy here grants it). A CORS preflight
   (``OPTIONS``) needs no credentials, as on AWS. Path-style URLs only (the endpoint's).

Resource-based policies (bucket, queue, topic and key policies) are stored but not
evaluated, except that moto applies a bucket policy's explicit Deny to object requests;
:data:`EMULATOR_LIMITS` states this wherever the runtime lists what it relaxes.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from botocore.auth import HmacV1QueryAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

ADMIN_USER = "headrace-admin"
# Signing names of the REST-JSON services the program uses: their errors are JSON too.
REST_JSON_SERVICES = frozenset({"lambda", "apigateway", "scheduler"})
ADMIN_KEY = ("test", "test")
LAMBDA_SERVICE_USER = "headrace-lambda-service"
# Service principals a local identity stands in for.
SERVICE_IDENTITIES = {LAMBDA_SERVICE_USER: "lambda.amazonaws.com"}

EMULATOR_LIMITS = (
    "resource-based policies (bucket, queue, topic and KMS key policies) are stored but not evaluated, "
    "except a bucket policy's explicit Deny on object requests — identity policies are enforced",
)


def _json_body(response: Any) -> dict[str, Any]:
    body = response.body  # some services have parsed it already
    return body if isinstance(body, dict) else json.loads(body or "{}")


def _arn(response: Any, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{response.region}:{response.current_account}:{resource}"


def _dynamodb(response: Any) -> list[str]:
    body = _json_body(response)
    tables: list[str] = []
    if "TableName" in body:
        resource = f"table/{body['TableName']}"
        if body.get("IndexName"):
            resource += f"/index/{body['IndexName']}"
        tables.append(resource)
    tables += [f"table/{name}" for name in body.get("RequestItems", {})]
    for item in body.get("TransactItems", []):
        for operation in item.values():
            if isinstance(operation, dict) and "TableName" in operation:
                tables.append(f"table/{operation['TableName']}")
    return [_arn(response, "dynamodb", table) for table in dict.fromkeys(tables)]


def _secretsmanager(response: Any) -> list[str]:
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = _json_body(response).get("SecretId")
    if not secret_id:
        return []
    secret = secretsmanager_backends[response.current_account][response.region].secrets.get(secret_id)
    return [secret.arn if secret is not None else secret_id]


def _sns(response: Any) -> list[str]:
    topic = response._get_param("TopicArn")
    return [topic] if topic else []


def _events(response: Any) -> list[str]:
    buses = [entry.get("EventBusName") or "default" for entry in _json_body(response).get("Entries", [])]
    return [
        bus if bus.startswith("arn:") else _arn(response, "events", f"event-bus/{bus}")
        for bus in dict.fromkeys(buses)
    ]


def _kms(response: Any) -> list[str]:
    from moto.kms.models import kms_backends

    key_id = _json_body(response).get("KeyId")
    if not key_id:
        return []
    backend = kms_backends[response.current_account][response.region]
    try:
        key_id = backend.any_id_to_key_id(key_id)
    except Exception:  # an unknown alias: the operation itself reports it
        return []
    return [_arn(response, "kms", f"key/{key_id}")]


def _sqs(response: Any) -> list[str]:
    """Requests that name a queue by ``QueueName`` (GetQueueUrl) or, as the message move
    tasks of a DLQ redrive do, by ``SourceArn``; moto reads only ``QueueUrl``."""
    source = response._get_param("SourceArn")
    if source:
        return [source]
    name = response._get_param("QueueName")
    if not name:
        return []
    account = response._get_param("QueueOwnerAWSAccountId") or response.current_account
    return [f"arn:aws:sqs:{response.region}:{account}:{name}"]


def _glue(response: Any) -> list[str]:
    """A table operation is checked against the catalog, the database and the table."""
    body = _json_body(response)
    database = body.get("DatabaseName")
    if not database:
        return []
    arns = [_arn(response, "glue", "catalog"), _arn(response, "glue", f"database/{database}")]
    # Name (GetTable), TableInput (CreateTable, UpdateTable), TableName (the partition calls)
    table = body.get("Name") or (body.get("TableInput") or {}).get("Name") or body.get("TableName")
    if table:
        arns.append(_arn(response, "glue", f"table/{database}/{table}"))
    return arns


# Operations AWS authorizes under another action's name (moto uses the operation's own).
ACTION_ALIASES = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:HeadBucket": "s3:ListBucket",
    "lambda:Invoke": "lambda:InvokeFunction",
}

RESOURCE_RESOLVERS: dict[str, Callable[[Any], list[str]]] = {
    "dynamodb": _dynamodb,
    "secretsmanager": _secretsmanager,
    "sns": _sns,
    "events": _events,
    "kms": _kms,
    "glue": _glue,
    "sqs": _sqs,
}


def denial_message(principal: str, action: str, resource: str, explicit: bool) -> str:
    reason = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    return f'User: {principal} is not authorized to perform: {action} on resource: "{resource}" {reason}'


def principal_matches(statement: dict[str, Any], principal: str) -> bool:
    """Whether a trust statement's ``Principal`` names the caller ``principal`` (an ARN)."""
    expected = statement.get("Principal")
    if not expected or expected == "*":
        return True

    def values(kind: str) -> list[str]:
        value = expected.get(kind, [])
        return [value] if isinstance(value, str) else list(value)

    if "*" in values("AWS") or principal in values("AWS"):
        return True
    user = principal.rsplit(":user/", 1)[-1] if ":user/" in principal else None
    return user in SERVICE_IDENTITIES and SERVICE_IDENTITIES[user] in values("Service")


# ------------------------------------------------------------------ presigned S3 requests
V4_QUERY_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
V2_QUERY_PARAMETERS = ("AWSAccessKeyId", "Signature", "Expires")
PRESIGNED_MAX_SECONDS = 604_800  # SigV4: a week
CLOCK_SKEW_SECONDS = 900  # how far in the future a request's date may be


class QueryAuthRefused(Exception):
    """A presigned request S3 refuses before looking up its key: ``code`` and ``message``
    as S3 answers (``AccessDenied``: 403; ``AuthorizationQueryParametersError``: 400)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class QueryAuth:
    """The authentication a presigned S3 request carries in its query string."""

    version: int  # 4 or 2
    access_key: str
    signature: str
    token: str | None
    region: str
    service: str
    timestamp: str  # SigV4: X-Amz-Date; SigV2: Expires (epoch seconds)
    signed_headers: tuple[str, ...]
    params: tuple[tuple[str, str], ...]  # every query parameter but the signature, decoded

    def expected_signature(
        self, credentials: Credentials, method: str, path: str, headers: Mapping[str, str]
    ) -> str:
        """The signature botocore computes for this request (``path``: as sent, encoded)."""
        if self.version == 4:
            request = AWSRequest(
                method=method,
                url=path,
                headers={name: headers.get(name, "") for name in self.signed_headers},
                params=list(self.params),
            )
            request.context["timestamp"] = self.timestamp
            signer = S3SigV4QueryAuth(credentials, self.service, self.region)
            canonical = signer.canonical_request(request)
            return str(signer.signature(signer.string_to_sign(request, canonical), request))
        expires = self.timestamp

        class Signer(HmacV1QueryAuth):
            def _get_date(self) -> str:
                return expires

        signed = HTTPHeaders()
        for name, value in headers.items():
            if name.lower() in ("content-md5", "content-type") or name.lower().startswith("x-amz-"):
                signed[name.lower()] = value
        for name, value in self.params:  # x-amz-* headers travel in the query string
            if name.lower().startswith("x-amz-"):
                signed[name.lower()] = value
        signer = Signer(credentials)
        return str(signer.sign_string(signer.canonical_string(method.upper(), urlsplit(path), signed)))


def query_auth(query: Sequence[tuple[str, str]], now: float) -> QueryAuth | None:
    """The query-string authentication of an S3 request (decoded parameters, in order),
    checked as S3 checks it before looking up the key: complete, well-formed, not expired
    (else :class:`QueryAuthRefused`). ``None``: the query string carries none."""
    names = {name for name, _ in query}
    values = dict(query)
    if names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"}:
        return _v4_query_auth(query, values, now)
    if names & {"AWSAccessKeyId", "Signature"}:
        return _v2_query_auth(query, values, now)
    return None


def _v4_query_auth(query: Sequence[tuple[str, str]], values: dict[str, str], now: float) -> QueryAuth:
    def malformed(message: str) -> QueryAuthRefused:
        return QueryAuthRefused("AuthorizationQueryParametersError", message)

    if any(not values.get(name) for name in V4_QUERY_PARAMETERS):
        raise malformed(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    if values["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        raise malformed('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = values["X-Amz-Credential"].split("/")
    if len(credential) != 5 or credential[4] != "aws4_request" or not all(credential):
        raise malformed(
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
            'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key, day, region, service, _ = credential
    if service != "s3":
        raise malformed(
            f'Error parsing the X-Amz-Credential parameter; incorrect service "{service}". '
            'This endpoint belongs to "s3".'
        )
    try:
        signed_at = datetime.strptime(values["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"") from None
    if day != values["X-Amz-Date"][:8]:
        raise malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    try:
        lifetime = int(values["X-Amz-Expires"])
    except ValueError:
        raise malformed("X-Amz-Expires should be a number") from None
    if lifetime < 0:
        raise malformed("X-Amz-Expires must be non-negative")
    if lifetime > PRESIGNED_MAX_SECONDS:
        raise malformed(
            f"X-Amz-Expires must be less than a week (in seconds) that is; {PRESIGNED_MAX_SECONDS} seconds"
        )
    if now < signed_at.timestamp() - CLOCK_SKEW_SECONDS:
        raise QueryAuthRefused("AccessDenied", "Request is not valid yet")
    if now > signed_at.timestamp() + lifetime:
        raise QueryAuthRefused("AccessDenied", "Request has expired")
    return QueryAuth(
        version=4,
        access_key=access_key,
        signature=values["X-Amz-Signature"],
        token=values.get("X-Amz-Security-Token"),
        region=region,
        service=service,
        timestamp=values["X-Amz-Date"],
        signed_headers=tuple(values["X-Amz-SignedHeaders"].lower().split(";")),
        params=tuple((k, v) for k, v in query if k != "X-Amz-Signature"),
    )


def _v2_query_auth(query: Sequence[tuple[str, str]], values: dict[str, str], now: float) -> QueryAuth:
    if any(not values.get(name) for name in V2_QUERY_PARAMETERS):
        raise QueryAuthRefused(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        )
    try:
        expires = int(values["Expires"])
    except ValueError:
        raise QueryAuthRefused(
            "AccessDenied", f"Invalid date (should be seconds since epoch): {values['Expires']}"
        ) from None
    if now > expires:
        raise QueryAuthRefused("AccessDenied", "Request has expired")
    return QueryAuth(
        version=2,
        access_key=values["AWSAccessKeyId"],
        signature=values["Signature"],
        token=values.get("x-amz-security-token"),
        region="us-east-1",  # SigV2 names no region; only its partition matters here
        service="s3",
        timestamp=values["Expires"],
        signed_headers=(),
        params=tuple((k, v) for k, v in query if k != "Signature"),
    )


def patch_authorization() -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import AccessDeniedError, JsonRESTError, _RESTError
    from moto.iam import access_control
    from moto.iam.access_control import (
        CreateAccessKeyFailure,
        IAMPolicy,
        IAMPolicyStatement,
        IAMRequestBase,
        PermissionResult,
        S3IAMRequest,
        create_access_key,
    )
    from moto.s3.exceptions import S3AccessDeniedError, S3ClientError
    from moto.s3.responses import S3Response
    from moto.utilities.utils import get_partition

    class Denied(AccessDeniedError):
        def __init__(self, message: str):
            _RESTError.__init__(self, "AccessDenied", message)

    class JsonError(JsonRESTError):
        code = 400

    class S3Denied(S3ClientError):
        def __init__(self, message: str):
            super().__init__("AccessDenied", message)

    class S3Refused(S3ClientError):  # the status follows the code: AccessDenied 403, else 400
        def __init__(self, refused: QueryAuthRefused):
            super().__init__(refused.code, refused.message)

    # 1. resources
    authorize_normal = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    def authorize_resources(self: Any, resource: str = "*") -> None:
        resolver = RESOURCE_RESOLVERS.get(getattr(self, "service_name", ""))
        resources: list[str] = []
        enforced = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        if enforced and resolver is not None and resource == "*":
            try:
                resources = resolver(self)
            except (ValueError, KeyError, AttributeError):  # malformed request: the operation rejects it
                resources = []
        for each in resources or [resource]:
            authorize_normal(self, each)

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize_resources  # type: ignore[method-assign]

    # 2. DeleteObjects: every key
    authorize_s3_header = S3Response._authenticate_and_authorize_s3_action

    def authorize_s3(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if "Authorization" in self.headers:
            authorize_s3_header(self, bucket_name=bucket_name, key_name=key_name)
            return
        # 7. no Authorization header: a presigned request, or an anonymous one (refused)
        target = f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*")
        self._authenticate_and_authorize_action(
            PresignedS3Request, f"arn:{get_partition(self.region)}:s3:::{target}"
        )

    def authorize_s3_keys(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if key_name is None and self.data.get("Action") == "DeleteObject" and self.is_delete_keys():
            import xmltodict

            objects = xmltodict.parse(self.body).get("Delete", {}).get("Object", [])
            for obj in objects if isinstance(objects, list) else [objects]:
                authorize_s3(self, bucket_name=bucket_name, key_name=obj["Key"])
            return
        authorize_s3(self, bucket_name=bucket_name, key_name=key_name)

    S3Response._authenticate_and_authorize_s3_action = authorize_s3_keys  # type: ignore[method-assign]

    # 7. S3 requests without an Authorization header
    class PresignedS3Request(S3IAMRequest):
        """An S3 request authenticated by its query string (moto's reads only the header)."""

        def __init__(
            self,
            account_id: str,
            method: str,
            path: str,
            data: dict[str, str],
            body: bytes,
            headers: dict[str, str],
            action: str,
        ):
            self.account_id = account_id
            self._method = method
            self._path = path  # as sent (encoded), with the query string
            self._data = data
            self._body = body
            self._headers = headers
            auth = checked_query_auth(urlsplit(path).query)
            if auth is None:
                raise S3AccessDeniedError()  # anonymous: no bucket policy here grants access
            self._query_auth = auth
            self._region, self._service = auth.region, auth.service
            self._action = f"{self._service}:{action[0] if isinstance(action, list) else action}"
            token = {"X-Amz-Security-Token": auth.token} if auth.token else {}
            try:
                self._access_key = create_access_key(
                    account_id=account_id,
                    partition=get_partition(auth.region),
                    access_key_id=auth.access_key,
                    headers=token,
                )
            except CreateAccessKeyFailure as exc:
                self._raise_invalid_access_key(exc.reason)

        def check_signature(self) -> None:
            credentials = self._access_key.create_credentials()
            expected = self._query_auth.expected_signature(
                credentials, self._method, self._path, self._headers
            )
            if not hmac.compare_digest(expected, self._query_auth.signature):
                self._raise_signature_does_not_match()

    def checked_query_auth(query: str) -> QueryAuth | None:
        try:
            return query_auth(parse_qsl(query, keep_blank_values=True), time.time())
        except QueryAuthRefused as refused:
            raise S3Refused(refused) from None

    # moto answers an unsigned request for an existing object itself, before authorizing it:
    # 403 with no body. It is refused here first, as an S3 error (AccessDenied).
    key_response = S3Response._key_response

    def refuse_unauthenticated(self: Any, request: Any, full_url: str) -> Any:
        enforced = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        unsigned = request.method != "OPTIONS" and "Authorization" not in request.headers
        if enforced and unsigned and checked_query_auth(urlsplit(full_url).query) is None:
            raise S3AccessDeniedError()
        return key_response(self, request, full_url)

    S3Response._key_response = refuse_unauthenticated  # type: ignore[method-assign]

    # 3. actions (batch operations need their base action) and denials that name them
    def check_action_permitted(self: Any, resource: str) -> None:
        self._action = ACTION_ALIASES.get(self._action, self._action)
        if self._action == "sts:GetCallerIdentity":  # always allowed, as on AWS
            return
        permitted = False
        values: dict[str, str] = {}  # 5. the condition keys evaluated here
        if isinstance(self, access_control.S3IAMRequest) and self._action == "s3:ListBucket":
            query = parse_qs(urlsplit(self._path).query, keep_blank_values=True)
            if "prefix" in query:
                values["s3:prefix"] = query["prefix"][0]
        token = REQUEST_CONDITION_VALUES.set(values)
        try:
            for policy in self._access_key.collect_policies():
                result = IAMPolicy(policy).is_action_permitted(self._action, resource)
                if result == PermissionResult.DENIED:
                    deny(self, resource, explicit=True)
                permitted = permitted or result == PermissionResult.PERMITTED
        finally:
            REQUEST_CONDITION_VALUES.reset(token)
        if permitted and self._is_assuming_role_operation(resource):
            permitted = self._check_role_trust_relationship(resource)
        if not permitted:
            deny(self, resource, explicit=False)

    def deny(request: Any, resource: str, explicit: bool) -> None:
        message = denial_message(request._access_key.arn, request._action, resource, explicit)
        if isinstance(request, access_control.S3IAMRequest):
            raise S3Denied(message)
        if json_protocol(request):
            raise JsonError("AccessDeniedException", message)
        raise Denied(message)

    IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]

    # 3. refused credentials and signatures: JSON for JSON clients (moto answers in XML,
    # which they cannot parse: the error would read "403")
    def json_protocol(request: Any) -> bool:
        return (
            "X-Amz-Target" in request._headers
            or "json" in request._headers.get("Content-Type", "")
            # REST-JSON (Lambda's Invoke with a binary payload or none, ListFunctions, ...)
            # sends no JSON content type: its service, signed in the credential scope, is one
            or getattr(request, "_service", None) in REST_JSON_SERVICES
        )

    raise_invalid_access_key = access_control.IAMRequest._raise_invalid_access_key
    raise_signature_does_not_match = access_control.IAMRequest._raise_signature_does_not_match

    def invalid_access_key(self: Any, reason: str) -> None:
        if json_protocol(self):
            raise JsonError(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        raise_invalid_access_key(self, reason)

    def signature_does_not_match(self: Any) -> None:
        if json_protocol(self):
            raise JsonError(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            )
        raise_signature_does_not_match(self)

    access_control.IAMRequest._raise_invalid_access_key = invalid_access_key  # type: ignore[method-assign,assignment]
    access_control.IAMRequest._raise_signature_does_not_match = signature_does_not_match  # type: ignore[method-assign]

    # 3. signatures: a bodiless request (a GET, a Lambda Invoke without a payload) has an
    # empty payload
    create_aws_request = IAMRequestBase._create_aws_request

    def create_signed_request(self: Any) -> Any:
        bodiless = self._method in ("GET", "HEAD", "DELETE") or self._headers.get("Content-Length") in (
            None,
            "",
            "0",
        )
        if self._body or not bodiless:
            return create_aws_request(self)
        parameters, self._data = self._data, b""
        try:
            return create_aws_request(self)
        finally:
            self._data = parameters

    IAMRequestBase._create_aws_request = create_signed_request  # type: ignore[method-assign]

    # 4. trust policies: service principals
    def check_principal(self: Any, principal: str) -> bool:
        return principal_matches(self._statement, principal)

    IAMPolicyStatement._check_principal = check_principal  # type: ignore[method-assign]

    # 5. identity statements with a condition: taken in the direction that denies
    statement_permitted = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(
        self: Any,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> Any:
        identity_policy = principal is None and incoming_condition_values is None
        condition = self._statement.get("Condition")
        allow = self._statement.get("Effect") == "Allow"
        if (
            identity_policy
            and condition
            and allow
            and not condition_holds(condition, REQUEST_CONDITION_VALUES.get())
        ):
            return PermissionResult.NEUTRAL  # moto would ignore the condition and allow
        return statement_permitted(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted  # type: ignore[method-assign]

    # 6. the administrator's well-known key
    from moto.iam.models import AccessKey

    access_key_init = AccessKey.__init__

    def init_access_key(self: Any, user_name: str | None, *args: Any, **kwargs: Any) -> None:
        access_key_init(self, user_name, *args, **kwargs)
        if user_name == ADMIN_USER:
            self.access_key_id, self.secret_access_key = ADMIN_KEY

    AccessKey.__init__ = init_access_key  # type: ignore[method-assign]


# ------------------------------------------------------------------------------ identities
def create_user(iam: Any, name: str, statement: dict[str, Any]) -> Credentials:
    """An IAM user with one inline policy statement, and an access key for it."""
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName=name,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


# 5. the condition operators and keys evaluated, and the request's values of those keys
EVALUATED_OPERATORS = ("StringEquals", "StringLike")
EVALUATED_KEYS = ("s3:prefix",)
REQUEST_CONDITION_VALUES: ContextVar[Mapping[str, str]] = ContextVar(
    "request_condition_values", default=MappingProxyType({})
)


def evaluable(condition: Mapping[str, Any]) -> bool:
    """Whether the emulator evaluates ``condition`` (a statement's ``Condition``)."""
    return all(
        operator in EVALUATED_OPERATORS and all(key.lower() in EVALUATED_KEYS for key in block)
        for operator, block in condition.items()
    )


def condition_holds(condition: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    """Whether ``condition`` holds for a request with these condition key ``values``, as
    IAM evaluates it (every operator, every key; a key absent from the request matches
    nothing); False for one the emulator does not evaluate (the direction that denies)."""
    if not evaluable(condition):
        return False
    for operator, block in condition.items():
        for key, expected in block.items():
            actual = values.get(key.lower())
            patterns = [expected] if isinstance(expected, str) else list(expected)
            if actual is None or not any(
                actual == pattern if operator == "StringEquals" else _like(pattern).fullmatch(actual)
                for pattern in patterns
            ):
                return False
    return True


def _like(pattern: str) -> re.Pattern[str]:
    """StringLike's pattern: ``*`` any characters, ``?`` one; case-sensitive."""
    return re.compile(
        ".*".join(".".join(map(re.escape, part.split("?"))) for part in pattern.split("*")), re.S
    )


ADMIN_STATEMENT = {"Effect": "Allow", "Action": "*", "Resource": "*"}
LAMBDA_SERVICE_STATEMENT = {
    "Effect": "Allow",
    "Action": "sts:AssumeRole",
    "Resource": "arn:aws:iam::*:role/*",
}


class RoleSessions:
    """Credentials of execution roles, obtained the way the Lambda service obtains them:
    ``sts:AssumeRole`` by the service's identity (:data:`LAMBDA_SERVICE_USER`), so the role's
    trust policy is checked too. Cached per role; renewed when less than
    ``RENEW_SECONDS`` of their hour is left."""

    DURATION_SECONDS = 3600
    RENEW_SECONDS = 600

    def __init__(self, sts: Any):
        self._sts = sts
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Credentials]] = {}

    def credentials(self, role_arn: str, session_name: str) -> Credentials:
        with self._lock:
            cached = self._cache.get(role_arn)
            if cached is None or cached[0] - time.time() < self.RENEW_SECONDS:
                answer = self._sts.assume_role(
                    RoleArn=role_arn, RoleSessionName=session_name[:64], DurationSeconds=self.DURATION_SECONDS
                )["Credentials"]
                cached = (
                    answer["Expiration"].timestamp(),
                    Credentials(answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"]),
                )
                self._cache[role_arn] = cached
            return cached[1]
