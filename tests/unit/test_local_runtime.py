"""Pure parts of the embedded runtime: schedules, HTTP API translation, SQS records."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

from headrace.local.cron import ScheduleError, next_fire
from headrace.local.executor import (
    LAMBDA_MAX_REQUEST_BYTES,
    ApiServer,
    QueueMapping,
    Route,
    Schedule,
    Scheduler,
    SqsPoller,
    event_bytes,
    lambda_sqs_record,
    record_label,
)
from headrace.local.sandbox import Invocation

T0 = datetime(2025, 3, 14, 10, 30, 15, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expression", "expected", "after"),
    [
        ("rate(5 minutes)", datetime(2025, 3, 14, 10, 35, 15, tzinfo=UTC), T0),
        ("rate(1 hour)", datetime(2025, 3, 14, 11, 30, 15, tzinfo=UTC), T0),
        ("cron(0 6 * * ? *)", datetime(2025, 3, 15, 6, 0, tzinfo=UTC), T0),
        ("cron(*/15 * * * ? *)", datetime(2025, 3, 14, 10, 45, tzinfo=UTC), T0),
        (
            "cron(0 9 ? * MON-FRI *)",
            datetime(2025, 3, 17, 9, 0, tzinfo=UTC),
            T0,
        ),  # next weekday 09:00 is Monday
        ("cron(30 10 ? * 6 *)", datetime(2025, 3, 21, 10, 30, tzinfo=UTC), T0),  # 6 = Friday in AWS cron
        ("cron(0 0 1 JAN ? 2026)", datetime(2026, 1, 1, 0, 0, tzinfo=UTC), T0),
        ("cron(0 6 * * ? *)", datetime(2025, 3, 15, 6, 0, tzinfo=UTC), datetime(2025, 3, 15, 5, 59, 59)),
        ("cron(0 6 * * ? *)", datetime(2025, 3, 16, 6, 0, tzinfo=UTC), datetime(2025, 3, 15, 6, 0)),
        ("cron(0 6 * * ? *)", datetime(2026, 1, 1, 6, 0, tzinfo=UTC), datetime(2025, 12, 31, 23, 59, 59)),
        # EventBridge's day forms, which the stack's configuration accepts (components/config.py)
        ("cron(0 6 L * ? *)", datetime(2025, 3, 31, 6, 0, tzinfo=UTC), T0),  # the month's last day
        ("cron(0 6 L 2 ? *)", datetime(2028, 2, 29, 6, 0, tzinfo=UTC), datetime(2027, 3, 1)),
        ("cron(0 6 29 2 ? *)", datetime(2028, 2, 29, 6, 0, tzinfo=UTC), datetime(2025, 3, 1)),
        ("cron(0 6 LW * ? *)", datetime(2025, 5, 30, 6, 0, tzinfo=UTC), datetime(2025, 5, 1)),  # 31st: Sat
        ("cron(0 6 15W * ? *)", datetime(2025, 3, 14, 6, 0, tzinfo=UTC), datetime(2025, 3, 1)),  # 15th: Sat
        ("cron(0 6 1W * ? *)", datetime(2025, 6, 2, 6, 0, tzinfo=UTC), datetime(2025, 5, 15)),  # 1st: Sun
        ("cron(0 6 1W * ? *)", datetime(2025, 11, 3, 6, 0, tzinfo=UTC), datetime(2025, 10, 15)),  # 1st: Sat
        ("cron(0 9 ? * L *)", datetime(2025, 3, 15, 9, 0, tzinfo=UTC), T0),  # the week's last day: Saturday
        ("cron(0 9 ? * 6L *)", datetime(2025, 3, 28, 9, 0, tzinfo=UTC), T0),  # the month's last Friday
        ("cron(0 9 ? * 2#1 *)", datetime(2025, 4, 7, 9, 0, tzinfo=UTC), T0),  # the month's first Monday
        ("cron(0 9 ? * MON#1 *)", datetime(2025, 4, 7, 9, 0, tzinfo=UTC), T0),
    ],
)
def test_next_fire(expression, expected, after):
    assert next_fire(expression, after.replace(tzinfo=UTC)) == expected


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("cron(0 6 * * *)", "6 fields"),
        ("every day", "not a schedule expression"),
        ("rate(3 fortnights)", "unsupported rate unit"),
        ("cron(0 6 30 2 ? *)", "never fires"),
        ("cron(*/0 * * * ? *)", "a step must be at least 1"),
        ("cron(70 6 * * ? *)", "'70' is outside 0-59"),
    ],
)
def test_unsupported_schedules_are_refused(expression, said):
    with pytest.raises(ScheduleError, match=said):
        next_fire(expression, T0)


class _OneTick:
    """A stop event that lets the scheduler's loop run once, without waiting."""

    def __init__(self) -> None:
        self.ticks = 0

    def wait(self, timeout: float) -> bool:
        self.ticks += 1
        return self.ticks > 1


def test_a_schedule_the_runtime_cannot_run_leaves_the_others_running(caplog):
    # Given a daily schedule that never fires, and the signals schedule every minute
    schedules = [
        Schedule("daily", "cron(0 6 30 2 ? *)", "report", None),
        Schedule("signals", "cron(* * * * ? *)", "report", {"task": "signals"}),
    ]
    invoked: list[tuple[str, Any, str]] = []
    clock = iter([T0, T0.replace(minute=32)])
    scheduler = Scheduler(
        schedules, lambda *call: invoked.append(call), _OneTick(), clock=lambda: next(clock)
    )
    # When the scheduler runs (two minutes pass)
    with caplog.at_level("ERROR", logger="headrace.local"):
        scheduler.run()
    # Then the signals fire, and the log says which schedule will not run, and why
    assert invoked == [("report", {"task": "signals"}, "schedule signals")]
    assert "schedule daily (report) will not run locally: 'cron(0 6 30 2 ? *)' never fires" in caplog.text


def _api(*keys: str) -> ApiServer:
    server = ApiServer.__new__(ApiServer)
    server.routes = [Route("api", key, "fn") for key in keys]
    return server


def test_routes_match_method_path_any_parameters_and_default():
    api = _api("POST /ingest", "GET /logs", "ANY /items/{id}", "GET /files/{proxy+}")
    assert api.match("POST", "/ingest").key == "POST /ingest"
    assert api.match("GET", "/ingest") is None
    assert api.match("DELETE", "/items/42").key == "ANY /items/{id}"
    assert api.match("GET", "/files/a/b/c").key == "GET /files/{proxy+}"
    assert _api("POST /ingest", "$default").match("GET", "/x").key == "$default"


def test_http_request_becomes_payload_v2_event():
    request = SimpleNamespace(
        headers=SimpleNamespace(
            items=lambda: [
                ("Content-Type", "text/plain"),
                ("X-Tenant-ID", "acme"),
                ("X-A", "1"),
                ("x-a", "2"),
            ]
        ),
        command="POST",
        request_version="HTTP/1.1",
        client_address=("127.0.0.1", 5555),
    )
    url = SimpleNamespace(path="/ingest", query="a=1&a=2&b=")
    event = ApiServer.event(request, Route("api1", "POST /ingest", "fn"), url, "héllo".encode())
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /ingest"
    assert event["headers"] == {"content-type": "text/plain", "x-tenant-id": "acme", "x-a": "1,2"}
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert (event["body"], event["isBase64Encoded"]) == ("héllo", False)
    assert event["requestContext"]["http"]["method"] == "POST"
    binary = ApiServer.event(request, Route("api1", "POST /ingest", "fn"), url, b"\xff\x00")
    assert (binary["body"], binary["isBase64Encoded"]) == ("/wA=", True)


def _request_with(headers: list[tuple[str, str]]) -> SimpleNamespace:
    return SimpleNamespace(
        headers=SimpleNamespace(items=lambda: headers),
        command="POST",
        request_version="HTTP/1.1",
        client_address=("127.0.0.1", 5555),
    )


@pytest.mark.parametrize(
    ("content_type", "as_text"),
    [
        ("text/plain", True),
        ("text/plain; charset=utf-8", True),
        ("Application/JSON; charset=UTF-8", True),
        ("application/json", True),
        ("application/xml", True),
        ("application/javascript", True),
        ("text/csv", True),
        (None, False),  # no Content-Type: base64, as on AWS
        ("application/octet-stream", False),
        ("application/x-www-form-urlencoded", False),
        ("application/x-ndjson", False),
        ("text/plain; charset=iso-8859-1", False),
        ("application/json; charset=utf-16", False),
    ],
)
@pytest.mark.parametrize("function_url", [False, True])
def test_a_body_is_base64_encoded_unless_its_content_type_is_text_as_api_gateway_does(
    content_type, as_text, function_url
):
    # Given a UTF-8 body sent with each content type (or none)
    headers = [("Content-Type", content_type)] if content_type else []
    route = Route("api1", "$default", "fn", function_url=function_url)
    url = SimpleNamespace(path="/ingest", query="")
    event = ApiServer.event(_request_with(headers), route, url, b'{"text": "h\xc3\xa9"}')
    # Then the function gets it as text only for the types API Gateway passes as text
    # (measured: text/*, JSON, XML, JavaScript, with no charset or UTF-8), else base64
    assert event["isBase64Encoded"] is not as_text
    expected = '{"text": "h\u00e9"}' if as_text else "eyJ0ZXh0IjogImjDqSJ9"
    assert event["body"] == expected
    # and a text type's body that is not UTF-8 arrives as sent, in base64
    latin1 = ApiServer.event(_request_with(headers), route, url, b"caf\xe9")
    assert (latin1["body"], latin1["isBase64Encoded"]) == ("Y2Fm6Q==", True)


def test_handler_responses_follow_payload_v2_rules():
    assert ApiServer.response(
        {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": "{}"}
    ) == (
        202,
        {"content-type": "application/json"},
        b"{}",
    )
    assert ApiServer.response({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True})[2] == b"hi"
    # a response without a Content-Type gets API Gateway's
    assert ApiServer.response({"statusCode": "204", "body": None}) == (
        204,
        {"content-type": "text/plain; charset=utf-8"},
        b"",
    )
    assert ApiServer.response({"statusCode": 200, "body": "x", "headers": {"Content-Type": "text/csv"}})[
        1
    ] == {"content-type": "text/csv"}
    assert ApiServer.response({"ok": True}) == (200, {"content-type": "application/json"}, b'{"ok": true}')


def test_sqs_message_becomes_a_lambda_record():
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "rh",
        "Body": "{}",
        "MD5OfBody": "x",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}},
    }
    record = lambda_sqs_record(message, "arn:aws:sqs:us-east-1:1:q", "us-east-1")
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:1:q"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["k"]["stringValue"] == "v"


def _poller(report_failures: bool) -> SqsPoller:
    poller = SqsPoller.__new__(SqsPoller)
    poller.mapping = QueueMapping("u", "fn", "arn", "url", report_batch_item_failures=report_failures)
    return poller


def test_partial_batch_responses():
    everything = {"a", "b", "c"}
    honouring = _poller(True)
    assert honouring._reported_failures({"batchItemFailures": [{"itemIdentifier": "b"}]}, everything) == {"b"}
    assert honouring._reported_failures({"batchItemFailures": []}, everything) == set()
    assert honouring._reported_failures(None, everything) == set()
    # an unknown id or a malformed entry fails the whole batch, as on AWS
    assert (
        honouring._reported_failures({"batchItemFailures": [{"itemIdentifier": "zz"}]}, everything)
        == everything
    )
    assert honouring._reported_failures({"batchItemFailures": [{"wrong": 1}]}, everything) == everything
    # without ReportBatchItemFailures the response is ignored: a returned value is success
    assert (
        _poller(False)._reported_failures({"batchItemFailures": [{"itemIdentifier": "b"}]}, everything)
        == set()
    )


@pytest.mark.parametrize(
    ("body", "label"),
    [
        (json.dumps({"detail": {"object": {"key": "incoming/a.csv"}}}), "incoming/a.csv"),
        (json.dumps({"detail": {"object_key": "incoming/b.csv"}}), "incoming/b.csv"),
        (json.dumps({"tenant_id": "acme", "log_id": "l1"}), "acme/l1"),
        ("not json", "(not JSON)"),
    ],
)
def test_record_labels(body, label):
    assert record_label(body) == label


def test_only_transport_deny_statements_are_relaxed_and_each_is_listed():
    from headrace.local.deploy import EmulatorMocks

    # Given a bucket policy with an allow, a TLS-only deny and a TLS-version deny
    mocks = EmulatorMocks(client=None, region="us-east-1")  # type: ignore[arg-type]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Reader", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"},
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyOutdatedTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
            },
            {
                "Sid": "DenyOthers",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteBucket",
                "Resource": "*",
            },
        ],
    }
    # When it is prepared for the plain-HTTP local endpoint
    kept = json.loads(mocks.local_policy("bucket policy of raw", policy))
    # Then only the two transport statements are gone, and both are reported by name
    assert [s["Sid"] for s in kept["Statement"]] == ["Reader", "DenyOthers"]
    assert len(mocks.relaxed) == 2
    assert "DenyInsecureTransport" in mocks.relaxed[0] and "aws:SecureTransport" in mocks.relaxed[0]
    assert "DenyOutdatedTls" in mocks.relaxed[1] and "s3:TlsVersion" in mocks.relaxed[1]


def test_identity_statements_with_conditions_are_listed_and_kept():
    from headrace.local.deploy import EmulatorMocks

    mocks = EmulatorMocks(client=None, region="us-east-1")  # type: ignore[arg-type]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Plain", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:q"},
            {
                "Sid": "TaggedOnly",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:b/*",
                "Condition": {"StringEquals": {"aws:PrincipalTag/team": "data"}},
            },
            {  # evaluated by the emulator (s3:prefix): not listed
                "Sid": "ListParquetOnly",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:b",
                "Condition": {"StringLike": {"s3:prefix": ["parquet/*"]}},
            },
            {
                "Sid": "NotFromOutside",
                "Effect": "Deny",
                "Action": "s3:GetObject",
                "Resource": "arn:b/*",
                "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            },
        ],
    }
    kept = json.loads(mocks.note_conditions("role r, policy p", policy))
    assert kept == policy
    assert mocks.relaxed == [
        "role r, policy p: Allow statement TaggedOnly never applies locally (stricter than AWS) — "
        "the emulator cannot evaluate its condition keys (aws:PrincipalTag/team)",
        "role r, policy p: Deny statement NotFromOutside always applies locally (stricter than AWS) — "
        "the emulator cannot evaluate its condition keys (aws:SourceIp)",
    ]


def test_trust_principals_match_aws_principals_and_the_local_lambda_service_only():
    from headrace.local.iam import principal_matches

    lambda_trust = {"Principal": {"Service": "lambda.amazonaws.com"}}
    assert principal_matches(lambda_trust, "arn:aws:iam::123456789012:user/headrace-lambda-service")
    assert not principal_matches(lambda_trust, "arn:aws:iam::123456789012:user/headrace-admin")
    account_trust = {"Principal": {"AWS": ["arn:aws:iam::123456789012:user/ops"]}}
    assert principal_matches(account_trust, "arn:aws:iam::123456789012:user/ops")
    assert not principal_matches(account_trust, "arn:aws:iam::123456789012:user/headrace-lambda-service")
    assert principal_matches({"Principal": "*"}, "arn:aws:iam::123456789012:user/anyone")


def test_policy_documents_are_computed_like_aws():
    from headrace.local.deploy import policy_document

    document = json.loads(
        policy_document(
            {
                "statements": [
                    {
                        "sid": "Send",
                        "actions": ["sqs:SendMessage"],
                        "resources": ["arn:q"],
                        "principals": [{"type": "Service", "identifiers": ["events.amazonaws.com"]}],
                        "conditions": [
                            {"test": "ArnEquals", "variable": "aws:SourceArn", "values": ["arn:rule"]}
                        ],
                    }
                ]
            }
        )
    )
    assert document["Statement"] == [
        {
            "Effect": "Allow",
            "Sid": "Send",
            "Action": "sqs:SendMessage",
            "Resource": "arn:q",
            "Principal": {"Service": "events.amazonaws.com"},
            "Condition": {"ArnEquals": {"aws:SourceArn": "arn:rule"}},
        }
    ]


class EchoPool:
    """A function that answers with the body it was given (and counts its invocations)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> Invocation:
        self.bodies.append(event.get("body", ""))
        self.events.append(event)
        return Invocation(
            ok=True,
            response={
                "statusCode": 200,
                "body": event.get("body", ""),
                "isBase64Encoded": event["isBase64Encoded"],
            },
        )


@pytest.fixture
def echo_api() -> Iterator[tuple[ApiServer, EchoPool]]:
    pool = EchoPool()
    server = ApiServer(
        [Route("api", "POST /ingest", "fn")], {"fn": pool}, "127.0.0.1", 0, lambda *a, **k: None
    )
    server.start()
    yield server, pool
    server.stop()


def _exchange(server: ApiServer, raw: bytes, half_close: bool = False) -> bytes:
    """Send ``raw`` on one connection; everything the server answers until it closes."""
    host, port = server.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(raw)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65_536):
            answer += chunk
        return answer


def test_a_chunked_body_reaches_the_function_whole(echo_api):
    server, pool = echo_api
    raw = (
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    )
    answer = _exchange(server, raw)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello, world")
    assert pool.bodies == ["hello, world"]


def test_a_body_cut_off_by_the_client_invokes_nothing(echo_api):
    # Given a request that announces 54 bytes and sends 30 before the client goes away
    server, pool = echo_api
    raw = b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 54\r\n\r\n" + b"a" * 30
    # Then the function never sees the partial body (API Gateway would not call it either)
    assert _exchange(server, raw, half_close=True) == b""
    assert pool.bodies == []


@pytest.mark.parametrize("size", [b"-1", b"0x5", b"+5", b"123456789"])
def test_a_chunk_size_that_is_not_plain_hex_is_refused(echo_api, size):
    server, pool = echo_api
    raw = (
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size
        + b"\r\nhello\r\n0\r\n\r\n"
    )
    assert _exchange(server, raw).startswith(b"HTTP/1.1 400")
    assert pool.bodies == []


@pytest.mark.parametrize(
    "chunks",
    [
        b"5\r\nhelloXX\r\n0\r\n\r\n",  # more data than the chunk size, where its CRLF belongs
        b"5\r\nhel\r\n",  # less data (the CRLF counted as data), then garbage
        b"\r\n5\r\nhello\r\n0\r\n\r\n",  # an empty line where a size belongs
    ],
)
def test_a_malformed_chunked_body_is_a_400(echo_api, chunks):
    # Given chunks whose framing is wrong while the client is still there
    server, pool = echo_api
    raw = b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"x" * 10
    # Then it gets an answer (not a closed connection), and the function is not invoked
    answer = _exchange(server, raw)
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1") == 1
    assert pool.bodies == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Content-Length: -5\r\n", b"400"),
        (b"Content-Length: abc\r\n", b"400"),
        (b"Content-Length: 3\r\nContent-Length: 4\r\n", b"400"),
        (b"Transfer-Encoding: chunked\r\n", b"400"),  # what follows is not chunks
        (b"Transfer-Encoding: gzip, chunked\r\n", b"501"),  # a coding the server cannot undo
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", b"501"),
        (b"Transfer-Encoding: chunked, gzip\r\nContent-Length: 2\r\n", b"400"),  # length unknown
        (b"Transfer-Encoding: gzip\r\nContent-Length: 2\r\n", b"400"),
        (b"Transfer-Encoding: chunked, chunked\r\n", b"400"),
        (b"Content-Length: 99999999999\r\n", b"413"),
        (b"Content-Length: " + b"9" * 5000 + b"\r\n", b"413"),  # more digits than int() takes
    ],
)
def test_a_body_that_cannot_be_read_is_refused_and_the_connection_closed(echo_api, headers, status):
    # Given a refused request followed, on the same connection, by bytes that look like a request
    server, pool = echo_api
    smuggled = b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    raw = b"POST /ingest HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + smuggled
    # Then it gets its error, and the connection ends there: nothing else is invoked
    answer = _exchange(server, raw)
    assert answer.startswith(b"HTTP/1.1 " + status) and answer.count(b"HTTP/1.1") == 1
    assert pool.bodies == []


def test_whitespace_around_header_values_is_not_part_of_them(echo_api):
    # Given header values with spaces and tabs around them (optional whitespace, RFC 9110)
    server, pool = echo_api
    raw = (
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nx-api-key: hr_key \r\nX-Tenant-ID:\tacme\t\r\n"
        b"X-Multi: a \r\nX-Multi:  b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert _exchange(server, raw).startswith(b"HTTP/1.1 200")
    # Then the function gets the values without it, as API Gateway passes them
    [event] = pool.events
    assert event["headers"]["x-api-key"] == "hr_key"
    assert event["headers"]["x-tenant-id"] == "acme"
    assert event["headers"]["x-multi"] == "a,b"


@pytest.fixture
def default_route_api() -> Iterator[tuple[ApiServer, EchoPool]]:
    """A server whose every request goes to one function (the ingest API's $default route)."""
    pool = EchoPool()
    server = ApiServer([Route("api", "$default", "fn")], {"fn": pool}, "127.0.0.1", 0, lambda *a, **k: None)
    server.start()
    yield server, pool
    server.stop()


def test_the_path_reaches_the_function_as_sent(default_route_api):
    # Given paths that http.server would tidy up (a leading "//" becomes "/")
    server, pool = default_route_api
    for target in (b"//logs?limit=1", b"/logs//x", b"/logs"):
        raw = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert _exchange(server, raw).startswith(b"HTTP/1.1 200")
    # Then the function sees them as API Gateway passes them: "//logs" is not "/logs"
    paths = [(e["rawPath"], e["requestContext"]["http"]["path"], e["rawQueryString"]) for e in pool.events]
    assert paths == [("//logs", "//logs", "limit=1"), ("/logs//x", "/logs//x", ""), ("/logs", "/logs", "")]


def test_cookies_move_from_the_headers_to_cookies(default_route_api):
    server, pool = default_route_api
    raw = b"GET /logs HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\nCookie: c=3;\r\nConnection: close\r\n\r\n"
    assert _exchange(server, raw).startswith(b"HTTP/1.1 200")
    [event] = pool.events
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]  # payload 2.0 keeps them only in "cookies"
    # (a function URL's event was seen to keep the header too)
    request = SimpleNamespace(
        headers=SimpleNamespace(items=lambda: [("Cookie", "a=1; b=2")]),
        command="GET",
        request_version="HTTP/1.1",
        client_address=("127.0.0.1", 5555),
    )
    url = SimpleNamespace(path="/logs", query="")
    function_url = ApiServer.event(request, Route("u", "$default", "fn", function_url=True), url, b"")
    assert (function_url["cookies"], function_url["headers"]["cookie"]) == (["a=1", "b=2"], "a=1; b=2")


class _FakeSandbox:
    """A sandbox process that can die while it waits idle (an OOM kill, a segfault)."""

    started: list[_FakeSandbox] = []

    def __init__(self, spec: Any, env: Any, root: Any, log_path: Any, logs: Any = None):
        self.spec, self.dead, self.killed = spec, False, False
        _FakeSandbox.started.append(self)

    def alive(self) -> bool:
        return not self.dead

    def invoke(self, event: Any) -> str:
        return "exited" if self.dead else f"ran by {_FakeSandbox.started.index(self)}"

    def kill(self) -> None:
        self.killed = True


def test_a_sandbox_that_died_while_idle_is_replaced_not_given_the_next_event(monkeypatch, tmp_path):
    # it was given the event and failed it at once ("the sandbox process exited"): the
    # file's attempt was spent for nothing, and it waited a visibility timeout
    from headrace.local import executor

    monkeypatch.setattr(executor, "Sandbox", _FakeSandbox)
    _FakeSandbox.started = []
    pool = executor.FunctionPool(SimpleNamespace(name="processor"), {}, tmp_path, tmp_path, concurrency=2)
    assert pool.invoke({}) == "ran by 0"
    _FakeSandbox.started[0].dead = True
    assert pool.invoke({}) == "ran by 1"
    assert _FakeSandbox.started[0].killed  # reaped


def test_a_sandbox_is_killed_without_holding_up_the_functions_other_invocations(monkeypatch, tmp_path):
    # a kill waits for the sandbox's output (up to DRAIN_SECONDS when a process it started
    # holds the pipe): done under the pool's lock, every invocation of the function waited
    from headrace.local import executor

    held: list[bool] = []

    class _Recorded(_FakeSandbox):
        def kill(self) -> None:
            held.append(pool._lock.locked())
            super().kill()

    monkeypatch.setattr(executor, "Sandbox", _Recorded)
    _FakeSandbox.started = []
    pool = executor.FunctionPool(SimpleNamespace(name="processor"), {}, tmp_path, tmp_path, concurrency=2)
    assert pool.invoke({}) == "ran by 0"
    _FakeSandbox.started[0].dead = True  # died while idle: reaped by the next invocation
    assert pool.invoke({}) == "ran by 1"
    pool.spec = SimpleNamespace(name="processor", timeout=9)  # reconfigured meanwhile: retired after
    pool.invoke({})
    assert held == [False, False]


def test_a_closed_pool_starts_no_sandbox(monkeypatch, tmp_path):
    # an asynchronous invocation's thread, or a schedule's, that reaches the pool after the
    # runtime closed it started a sandbox that ran on after the runtime had stopped
    from headrace.local import executor

    monkeypatch.setattr(executor, "Sandbox", _FakeSandbox)
    _FakeSandbox.started = []
    pool = executor.FunctionPool(SimpleNamespace(name="report"), {}, tmp_path, tmp_path, concurrency=2)
    pool.close()
    result = pool.invoke({})
    assert (result.ok, result.error_type, _FakeSandbox.started) == (False, "Runtime.Stopping", [])


# ------------------------------------------------------------------ handler code edits (local up)
def test_new_code_retires_idle_sandboxes_at_once_and_a_busy_one_after_its_invocation(monkeypatch, tmp_path):
    # An edit of handlers/processor.py while `local up` ran was never seen: warm sandboxes
    # went on running the code they had imported until the whole runtime was restarted.
    # As after a code update on AWS: the invocation in flight finishes on the old code,
    # every later one runs in a fresh sandbox.
    from headrace.local import executor

    started, release = threading.Event(), threading.Event()

    class _Busy(_FakeSandbox):
        def invoke(self, event: Any) -> str:
            if event == "hold":
                started.set()
                release.wait()
            return super().invoke(event)

    monkeypatch.setattr(executor, "Sandbox", _Busy)
    _FakeSandbox.started = []
    pool = executor.FunctionPool(SimpleNamespace(name="processor"), {}, tmp_path, tmp_path, concurrency=2)
    assert pool.invoke({}) == "ran by 0"
    results: list[str] = []
    busy = threading.Thread(target=lambda: results.append(pool.invoke("hold")), daemon=True)
    busy.start()
    try:
        started.wait()  # sandbox 0 is busy with it
        assert pool.invoke({}) == "ran by 1"  # sandbox 1, idle after it
        pool.retire()  # the handlers changed
        in_flight, idle = _FakeSandbox.started
        assert (idle.killed, in_flight.killed) == (True, False)  # the busy one is left to finish
    finally:
        release.set()
    busy.join()
    assert results == ["ran by 0"] and in_flight.killed  # finished, then ended: not put back
    assert pool.invoke({}) == "ran by 2"  # a fresh sandbox, which imports the new code
    assert pool.invoke({}) == "ran by 2"  # and it stays warm


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_code_fingerprint_covers_the_handlers_and_the_program_and_nothing_else(tmp_path):
    from headrace.local.codewatch import HANDLER_CODE, PROGRAM_CODE, fingerprint

    _tree(
        tmp_path,
        {
            "handlers/processor.py": "x = 1\n",
            "handlers/logic/deep/parse.py": "y = 2\n",
            "handlers/requirements.txt": "duckdb\n",
            "handlers/__pycache__/processor.cpython-311.py": "",
            "__main__.py": "",
            "components/storage.py": "",
            "Pulumi.yaml": "",
            "Pulumi.local.yaml": "",
            "Pulumi.prod.yaml": "",  # another stack's: not what the runtime deploys
            "scripts/tool.py": "",
            "notes.py": "",
        },
    )
    handlers = fingerprint(tmp_path, HANDLER_CODE)
    assert sorted(handlers) == ["handlers/logic/deep/parse.py", "handlers/processor.py"]
    assert handlers["handlers/processor.py"][1] == len("x = 1\n")
    assert sorted(fingerprint(tmp_path, PROGRAM_CODE)) == [
        "Pulumi.local.yaml",
        "Pulumi.yaml",
        "__main__.py",
        "components/storage.py",
    ]
    assert fingerprint(tmp_path / "missing", HANDLER_CODE) == {}


def test_the_code_watch_names_each_change_once(tmp_path):
    from headrace.local.codewatch import CodeWatch

    _tree(tmp_path, {"handlers/processor.py": "x = 1\n", "handlers/loader.py": "", "components/a.py": ""})
    watch = CodeWatch(tmp_path)
    assert watch.check() == ([], [])
    processor = tmp_path / "handlers/processor.py"
    mtime = processor.stat().st_mtime_ns
    processor.write_text("x = 2\n")  # same size
    os.utime(processor, ns=(mtime + 1, mtime + 1))  # a nanosecond later
    assert watch.check() == (["handlers/processor.py"], [])
    assert watch.check() == ([], [])  # reported once
    (tmp_path / "handlers/loader.py").unlink()
    _tree(tmp_path, {"handlers/logic/new.py": "", "components/a.py": "changed"})
    assert watch.check() == (["handlers/loader.py", "handlers/logic/new.py"], ["components/a.py"])


def test_a_handler_file_the_program_imports_is_program_code_too(tmp_path):
    # handlers/models/tables.py holds the tables' keys the program deploys: edited while
    # `local up` ran, the sandboxes took the new keys and the deployed table kept the old
    # ones, and nothing said a restart was needed
    from headrace.local.codewatch import PROGRAM_CODE, CodeWatch, fingerprint, program_handler_files

    _tree(
        tmp_path,
        {
            "__main__.py": "import components.pipeline\n",
            "components/pipeline.py": (
                "from handlers.models import tables\n"
                "from handlers.logic.layout import PREFIX\n"
                "def later():\n    from handlers.logic import engine\n"  # run when called only
            ),
            "components/config.py": "from .pipeline import tables\n",
            "handlers/__init__.py": "",
            "handlers/models/__init__.py": "from handlers.logic import engine\n",  # not the program's
            "handlers/models/tables.py": "from .keys import KEY\n",
            "handlers/models/keys.py": "KEY = 'pk'\n",
            "handlers/logic/__init__.py": "",
            "handlers/logic/layout.py": "PREFIX = 'p/'\n",
            "handlers/logic/engine.py": "",
            "handlers/processor.py": "from handlers.models import tables\n",
        },
    )
    program = fingerprint(tmp_path, PROGRAM_CODE)
    assert program_handler_files(tmp_path, program) == {
        "handlers/models/tables.py",
        "handlers/models/keys.py",
        "handlers/logic/layout.py",
    }
    watch = CodeWatch(tmp_path)
    (tmp_path / "handlers/models/keys.py").write_text("KEY = 'tenant'\n")
    (tmp_path / "handlers/processor.py").write_text("")
    assert watch.check() == (
        ["handlers/models/keys.py", "handlers/processor.py"],
        ["handlers/models/keys.py"],  # and a restart is asked for
    )
    # an import the program gains counts from the edit that adds it
    _tree(
        tmp_path,
        {"components/pipeline.py": "from handlers.logic import engine\n", "handlers/logic/engine.py": "#"},
    )
    assert watch.check() == (
        ["handlers/logic/engine.py"],
        ["components/pipeline.py", "handlers/logic/engine.py"],
    )


def test_a_program_edit_undone_is_the_deployed_program_again(tmp_path):
    # a revert (or `git stash` and `pop`, or a save without a change) was reported as a
    # change needing a restart, with nothing to say the program was back as deployed
    from headrace.local.codewatch import CodeWatch

    _tree(
        tmp_path,
        {
            "__main__.py": "import components.storage\n",
            "components/storage.py": "from handlers.models import tables\nBUCKETS = 3\n",
            "handlers/models/tables.py": "KEY = 'pk'\n",
            "handlers/processor.py": "",
        },
    )
    watch = CodeWatch(tmp_path)
    storage, tables = tmp_path / "components/storage.py", tmp_path / "handlers/models/tables.py"
    # When a program file and a handler file it imports are edited
    storage.write_text("from handlers.models import tables\nBUCKETS = 4\n")
    tables.write_text("KEY = 'sk'\n")
    assert watch.check()[1] == ["components/storage.py", "handlers/models/tables.py"]
    assert not watch.program_as_deployed()
    # Then undoing one of them is not enough
    storage.write_text("from handlers.models import tables\nBUCKETS = 3\n")
    assert watch.check()[1] == ["components/storage.py"] and not watch.program_as_deployed()
    # and undoing both is the program as deployed, whatever the files' times say
    tables.write_text("KEY = 'pk'\n")
    os.utime(tables, ns=(1, 1))
    assert watch.check()[1] == ["handlers/models/tables.py"] and watch.program_as_deployed()
    # a new program file is a change, and so is a deleted one
    _tree(tmp_path, {"components/extra.py": ""})
    assert watch.check()[1] == ["components/extra.py"] and not watch.program_as_deployed()
    (tmp_path / "components/extra.py").unlink()
    assert watch.check()[1] == ["components/extra.py"] and watch.program_as_deployed()
    storage.unlink()
    assert watch.check()[1] == ["components/storage.py"] and not watch.program_as_deployed()


def test_the_handler_files_this_program_deploys_from():
    from headrace.local.codewatch import PROGRAM_CODE, fingerprint, program_handler_files

    root = Path(__file__).resolve().parents[2]
    imported = program_handler_files(root, fingerprint(root, PROGRAM_CODE))
    assert "handlers/models/tables.py" in imported
    assert "handlers/processor.py" not in imported and "handlers/logic/processing/engine.py" not in imported


def test_a_handler_change_retires_every_pool_and_a_program_change_asks_for_a_restart():
    from headrace.local import executor

    retired: list[str] = []
    pools = {name: SimpleNamespace(retire=lambda name=name: retired.append(name)) for name in ("a", "b")}
    lines: list[str] = []
    changes = [
        (["handlers/logic/a.py", "handlers/processor.py"], []),
        ([], ["__main__.py"]),
        ([], []),
        ([], ["__main__.py"]),  # undone
    ]
    as_deployed = [False, True]
    runtime = SimpleNamespace(
        pools=pools,
        _on_invocation=lines.append,
        _code_watch=SimpleNamespace(
            check=lambda: changes.pop(0), program_as_deployed=lambda: as_deployed.pop(0)
        ),
    )
    for _ in range(4):
        executor.Executor.check_code(runtime)  # type: ignore[arg-type]
    assert retired == ["a", "b"]
    assert lines == [
        "handlers changed (handlers/logic/a.py, handlers/processor.py): new sandboxes from the next invocation",
        "program changed (__main__.py): not deployed; restart `headrace local up` to deploy it",
        "program changed (__main__.py): as deployed again, no restart needed",
    ]
    # without a watch (local demo, the tests): nothing is checked
    executor.Executor.check_code(SimpleNamespace(_code_watch=None))  # type: ignore[arg-type]


def test_a_sandbox_crash_quotes_only_what_was_logged_during_its_invocation(tmp_path):
    # the function's log is shared by its sandboxes and kept across invocations: an
    # earlier crash's traceback was quoted as this one's cause
    from headrace.local.sandbox import Sandbox

    log = tmp_path / "processor.log"
    log.write_text("Traceback ...\nSimulatedCrash: an earlier invocation\n")
    sandbox = SimpleNamespace(log_path=log)
    since = log.stat().st_size
    assert Sandbox._log_tail(sandbox, since) == "(nothing logged)"  # type: ignore[arg-type]
    with log.open("a") as more:
        more.write("MemoryError\n")
    assert Sandbox._log_tail(sandbox, since) == "MemoryError"  # type: ignore[arg-type]


# ------------------------------------------------------------------ asynchronous invocations
class _FlakyPool:
    """A function's pool whose first ``failures`` invocations fail."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    def invoke(self, event: Any) -> Invocation:
        self.calls += 1
        if self.calls > self.failures:
            return Invocation(ok=True)
        return Invocation(ok=False, error_type="RuntimeError", error="the database is down")


def _invoke_async(
    monkeypatch: pytest.MonkeyPatch, failures: int, stop: threading.Event
) -> tuple[_FlakyPool, list[str]]:
    """Invoke a function whose first ``failures`` attempts fail as a schedule does, with
    retry delays of 0.05 and 0.1 s; its pool and the invocation log's labels, once every
    attempt it is given has ended (run in this thread: no sleep guesses when that is)."""
    from headrace.local import executor

    monkeypatch.setattr(executor, "ASYNC_RETRY_DELAYS", (0.05, 0.1))
    pool, lines = _FlakyPool(failures), []
    runtime = SimpleNamespace(
        pools={"report": pool}, _stop=stop, _report=lambda *a, label: lines.append(label)
    )
    executor.Executor._async_attempts(runtime, "report", {}, "schedule daily")  # type: ignore[arg-type]
    return pool, lines


@pytest.mark.parametrize(
    "failures, lines",
    [
        (0, ["schedule daily"]),
        (1, ["schedule daily (retry in 0.05 s)", "schedule daily (attempt 2)"]),
        (
            2,
            [
                "schedule daily (retry in 0.05 s)",
                "schedule daily (attempt 2) (retry in 0.1 s)",
                "schedule daily (attempt 3)",
            ],
        ),
        (
            5,
            [
                "schedule daily (retry in 0.05 s)",
                "schedule daily (attempt 2) (retry in 0.1 s)",
                "schedule daily (attempt 3) (dropped)",
            ],
        ),
    ],
)
def test_a_failed_asynchronous_invocation_is_retried_twice_like_lambda_does(monkeypatch, failures, lines):
    # A scheduled report that failed on a passing database outage was never run again
    # locally, where Lambda retries an asynchronous event twice, then drops it
    pool, logged = _invoke_async(monkeypatch, failures, threading.Event())
    assert (pool.calls, logged) == (min(failures, 2) + 1, lines)


def test_a_stopping_runtime_retries_nothing(monkeypatch):
    stop = threading.Event()
    stop.set()
    pool, logged = _invoke_async(monkeypatch, 5, stop)
    assert (pool.calls, logged) == (1, ["schedule daily (dropped)"])


# ------------------------------------------------------------------ Lambda's invoke payload limit
def _request(request_line: str, headers: list[tuple[str, str]]) -> Any:
    """What the server's request handler holds after parsing ``request_line`` and ``headers``."""
    method, target, version = request_line.split(" ")
    return SimpleNamespace(
        headers=SimpleNamespace(items=lambda: headers),
        command=method,
        path=target,
        requestline=request_line,
        request_version=version,
        client_address=("127.0.0.1", 5555),
    )


def test_the_largest_ingest_body_fits_lambdas_invoke_limit_whatever_it_holds():
    # Given the largest body the stack config and the function accept, every byte of it a
    # control character (six bytes each in the event's JSON), and a request line and headers
    # filling an HTTP API's 10,240 bytes with what the event repeats and escapes most: quotes
    # in the Host (three copies) and User-Agent (two), %1b in the query (decoded, escaped)
    from components.config import Ingest
    from handlers.models.ingest import DEFAULT_MAX_BODY_BYTES, IngestApiSettings

    fields = [Ingest.model_fields["max_body_bytes"], IngestApiSettings.model_fields["max_body_bytes"]]
    largest = max(next(m.le for m in field.metadata if hasattr(m, "le")) for field in fields)
    assert largest >= DEFAULT_MAX_BODY_BYTES
    target = "/ingest?q=" + "%1b" * 800
    request_line = f"POST {target} HTTP/1.1"
    headers = [
        ("Host", '"' * 2500),
        ("User-Agent", '"' * 2500),
        ("Content-Type", "text/plain"),
        ("X-Tenant-ID", "acme"),
        ("x-api-key", "hr_" + "x" * 43),
    ]
    headers.append(("X-Pad", "\\" * (10_240 - len(request_line) - sum(len(v) for _, v in headers))))
    assert len(request_line) + sum(len(v) for _, v in headers) == 10_240
    route = Route("api", "$default", "ingest")
    event = ApiServer.event(_request(request_line, headers), route, urlsplit(target), b"\x1b" * largest)
    # Then its event still fits Lambda's synchronous invocation payload
    assert event_bytes(event) <= LAMBDA_MAX_REQUEST_BYTES
    # (a MiB of them alone, the former default, did not)
    plain = _request("POST /ingest HTTP/1.1", [("Content-Type", "text/plain")])
    former = ApiServer.event(plain, route, urlsplit("/ingest"), b"\x1b" * 1_048_576)
    assert event_bytes(former) > LAMBDA_MAX_REQUEST_BYTES


def test_an_event_over_lambdas_limit_is_refused_like_api_gateway_does(echo_api):
    # Given a text body API Gateway accepts (under 10 MB) whose event Lambda would refuse:
    # 1,100,000 control characters are 6.6 MB as a JSON string
    server, pool = echo_api
    body = b"\x1b" * 1_100_000
    head = b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    raw = head + b"Content-Length: %d\r\n\r\n" % len(body)
    # Then the function is not invoked, and the answer is API Gateway's 413
    answer = _exchange(server, raw + body)
    assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b'{"message":"Request Entity Too Large"}')
    assert pool.bodies == []
    # while a body whose event fits reaches the function
    body = b"\x1b" * 1_000_000
    raw = head + b"Content-Length: %d\r\n\r\n" % len(body)
    assert _exchange(server, raw + body).startswith(b"HTTP/1.1 200")
    assert pool.bodies == [body.decode()]
    # and so does one of a binary type, which reaches the function base64-encoded (8/6 of
    # its size, not six times)
    raw = raw.replace(b"text/plain", b"application/octet-stream").replace(b"1000000", b"1100000")
    assert _exchange(server, raw + b"\x1b" * 1_100_000).startswith(b"HTTP/1.1 200")
    assert pool.events[-1]["isBase64Encoded"] is True


class AnsweringPool:
    """A function that answers every request with ``response``."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def invoke(self, event: dict[str, Any]) -> Invocation:
        if isinstance(self.response, Invocation):  # the invocation's outcome itself
            return self.response
        return Invocation(ok=True, response=self.response)


UNSENDABLE_RESPONSES = [
    ({"statusCode": "abc", "body": "{}"}, "MalformedResponse"),
    ({"statusCode": 2020, "body": "{}"}, "MalformedResponse"),
    ({"statusCode": True, "body": "{}"}, "MalformedResponse"),
    ({"statusCode": 200, "body": {"status": "enqueued"}}, "MalformedResponse"),  # not a string
    ({"statusCode": 200, "body": "not base64!", "isBase64Encoded": True}, "MalformedResponse"),
    ({"statusCode": 200, "body": "{}", "headers": ["content-type"]}, "MalformedResponse"),
    # what Lambda's runtime could not return (the sandbox fails the invocation: not JSON,
    # or over its 6 MB response limit)
    (
        Invocation(ok=False, error_type="Runtime.MarshalError", error="Unable to marshal"),
        "Runtime.MarshalError",
    ),
    (
        Invocation(ok=False, error_type="Function.ResponseSizeTooLarge", error="6 MB"),
        "Function.ResponseSizeTooLarge",
    ),
]


def test_a_response_api_gateway_cannot_send_is_its_500_not_a_dropped_connection():
    # Given a function whose answers Lambda or API Gateway cannot turn into an HTTP response
    reported: list[tuple[Any, ...]] = []
    pool = AnsweringPool(None)
    server = ApiServer(
        [Route("api", "$default", "fn")],
        {"fn": pool},
        "127.0.0.1",
        0,
        lambda *args, **kwargs: reported.append(args),
    )
    server.start()
    request = b"GET /logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    try:
        for response, error_type in UNSENDABLE_RESPONSES:
            pool.response = response
            answer = _exchange(server, request)
            # Then the client gets API Gateway's 500, and the invocation is reported as failed
            assert answer.startswith(b"HTTP/1.1 500"), error_type
            assert answer.endswith(b'{"message":"Internal Server Error"}'), error_type
            (function, _, failed, result) = reported.pop()
            assert (function, failed, result.ok, result.error_type) == ("fn", {"request"}, False, error_type)
        # while a response API Gateway can map is sent
        pool.response = {"statusCode": 200, "body": "é" * 3_145_600, "headers": {"x-n": 1.5}}
        answer = _exchange(server, request)
        assert answer.startswith(b"HTTP/1.1 200") and b"x-n: 1.5\r\n" in answer
        assert reported.pop()[3].ok
    finally:
        server.stop()


@pytest.fixture
def stop_signal_handlers() -> Iterator[None]:
    """The test process's own handlers, back after the test."""
    import signal

    from headrace.local.runtime import STOP_SIGNALS

    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_second_stop_signal_does_not_cut_the_runtime_s_cleanup_short(stop_signal_handlers, second):
    # (during the start and in `local demo`, an impatient second Ctrl-C interrupted the
    # cleanup the first had started: PostgreSQL was left running until the next start)
    import contextlib
    import os
    import signal

    from headrace.local.cli import _interrupt_on_signals

    _interrupt_on_signals()
    cleaned = []
    # Given a runtime stopping after SIGTERM
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    # When another stop signal comes during its cleanup
    with contextlib.suppress(KeyboardInterrupt):
        os.kill(os.getpid(), getattr(signal, second))
        cleaned.append("postgres")
    # Then the cleanup runs to its end
    assert cleaned == ["postgres"]


@pytest.mark.parametrize("step_fails", [False, True])
def test_a_stop_signal_held_during_a_step_is_delivered_after_it_unless_the_step_failed(step_fails):
    from headrace.local.runtime import signals_held_until_done

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGTERM, interrupt)
    try:
        # Given a SIGTERM that arrives while the step runs
        try:
            with signals_held_until_done("the step"):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # (delivered to the holder, not raised here)
                if step_fails:
                    raise RuntimeError("the program failed: its message")
        except KeyboardInterrupt:  # (caught: one escaping would stop the whole test run)
            outcome = "interrupted"
        except RuntimeError as exc:
            outcome = str(exc)
        else:
            outcome = "went on"
        # Then it stops the runtime once the step ends; a step that failed stops it with
        # its own error, which the held signal does not replace
        assert outcome == ("the program failed: its message" if step_fails else "interrupted")
    finally:
        signal.signal(signal.SIGTERM, saved)


# ------------------------------------------------------------------ CloudWatch Logs
def test_log_batches_keep_within_put_log_events_limits_and_lose_nothing():
    from headrace.local.logs import EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_EVENT_BYTES, batches

    # 25,000 short lines, a 600 KiB line (with multi-byte characters), an empty line
    huge = "é" * (300 * 1024)
    events = [(1000 + i, f"line {i}") for i in range(25_000)] + [(30_000, huge), (30_001, "")]
    sent = list(batches(events))
    assert all(len(b) <= 10_000 for b in sent)
    assert all(sum(len(e["message"].encode()) + EVENT_OVERHEAD for e in b) <= MAX_BATCH_BYTES for b in sent)
    flat = [e for b in sent for e in b]
    assert all(len(e["message"].encode()) + EVENT_OVERHEAD <= MAX_EVENT_BYTES for e in flat)
    # in order, the large line split into events that join back into it, the empty one left out
    assert [e["timestamp"] for e in flat] == sorted(e["timestamp"] for e in flat)
    assert [e["message"] for e in flat[:25_000]] == [m for _, m in events[:25_000]]
    assert "".join(e["message"] for e in flat[25_000:]) == huge


def test_a_function_logs_to_the_log_group_of_its_logging_config():
    from headrace.local.executor import discover_functions

    functions = [
        {"FunctionName": "a", "FunctionArn": "arn:a", "Handler": "h.h"},
        {
            "FunctionName": "b",
            "FunctionArn": "arn:b",
            "Handler": "h.h",
            "LoggingConfig": {"LogGroup": "shared"},
        },
    ]
    pages = SimpleNamespace(paginate=lambda: [{"Functions": functions}])
    client = SimpleNamespace(get_paginator=lambda name: pages)
    specs = discover_functions(lambda service: client)
    assert (specs["a"].log_group, specs["b"].log_group) == ("/aws/lambda/a", "shared")


def test_the_emulator_runs_with_two_malloc_arenas_unless_the_user_says_otherwise(monkeypatch):
    # glibc's per-thread arenas each kept the freed memory of the server threads' largest
    # answers: the emulator grew with every `headrace status` over a day's metadata items
    import subprocess

    from headrace.local import emulator

    started: list[dict[str, str]] = []

    def popen(*args: Any, env: dict[str, str], **kwargs: Any) -> Any:
        started.append(env)
        raise OSError("not started")  # the test stops here

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setenv("HEADRACE_SOMETHING", "kept")
    port = emulator.free_port()
    with pytest.raises(OSError, match="not started"):
        emulator.Emulator(port=port).start()
    assert started[-1]["MALLOC_ARENA_MAX"] == "2"
    assert started[-1]["HEADRACE_SOMETHING"] == "kept"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    with pytest.raises(OSError, match="not started"):
        emulator.Emulator(port=port).start()
    assert started[-1]["MALLOC_ARENA_MAX"] == "8"


def test_the_invocation_lines_align_on_the_longest_function_name(tmp_path):
    # the names were padded to 14 characters, and the deployed ones are longer
    # (headrace-local-processor): each line's outcome started somewhere else
    from headrace.local.executor import Deployment, Executor
    from headrace.local.sandbox import FunctionSpec

    names = ("headrace-local-processor", "headrace-local-loader")
    lines: list[str] = []
    executor = Executor(
        Deployment(functions={n: FunctionSpec(n, f"arn:{n}", "handlers.x.handler") for n in names}),
        sandbox_env=lambda spec: {},
        client=lambda service: None,
        region="us-east-1",
        root=tmp_path,
        log_dir=tmp_path / "logs",
        on_invocation=lines.append,
    )
    try:
        message = {"MessageId": "1", "Body": json.dumps({"detail": {"object": {"key": "incoming/a.csv"}}})}
        for name in names:
            executor._report(name, [message], set(), Invocation(ok=True, duration_ms=12))
        executor._report(
            names[1], None, set(), Invocation(ok=False, error_type="E", error="x"), label="invoke"
        )
    finally:
        executor.invocations.httpd.server_close()
    assert lines == [
        "headrace-local-processor ok     incoming/a.csv  (    12 ms)",
        "headrace-local-loader    ok     incoming/a.csv  (    12 ms)",
        "headrace-local-loader    FAILED invoke  (     0 ms  E: x)",
    ]


def _closed_by_server(conn: socket.socket, trickle: bytes = b"") -> bool:
    """Whether the server closes ``conn`` (an answer and then the end, or the end alone),
    sending ``trickle`` a byte at a time meanwhile; False when it is still open after
    ten seconds of this (far beyond the deadline the tests set)."""
    conn.settimeout(0.05)
    for i in range(200):
        try:
            if not conn.recv(65_536):
                return True
        except TimeoutError:
            pass
        except ConnectionResetError:
            return True
        if trickle:
            conn.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
    return False


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, nothing sent
        b"POST /ingest HTTP/1.1\r\nHost: x\r\n",  # half the headers
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 54\r\n\r\n" + b"a" * 30,  # half the body
    ],
)
def test_a_client_that_stops_sending_half_way_does_not_hold_the_server(echo_api, monkeypatch, sent):
    # Given a request read deadline of 0.3 s (30 s in the runtime)
    from headrace.local import executor

    monkeypatch.setattr(executor, "REQUEST_READ_SECONDS", 0.3)
    server, pool = echo_api
    # When a client sends part of a request and then nothing, keeping the connection open
    with socket.create_connection(server.httpd.server_address[:2]) as conn:
        conn.sendall(sent)
        # Then the server closes it (a thread was held for as long as the client waited)
        assert _closed_by_server(conn)
    assert pool.bodies == []
    # and the next client is served as before
    answer = _exchange(
        server,
        b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    assert answer.startswith(b"HTTP/1.1 200") and pool.bodies == ["hi"]


def test_a_request_sent_a_byte_at_a_time_has_one_deadline_for_all_of_it(echo_api, monkeypatch):
    # A deadline per read would let a client sending a byte every few seconds hold a thread
    from headrace.local import executor

    monkeypatch.setattr(executor, "REQUEST_READ_SECONDS", 0.3)
    server, pool = echo_api
    with socket.create_connection(server.httpd.server_address[:2]) as conn:
        conn.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert _closed_by_server(conn, trickle=b"abcdefgh")
    assert pool.bodies == []


def test_an_http_api_request_s_line_gives_the_status_it_was_answered():
    # a 401 (a wrong key) was "ok  POST /ingest", as a 202 was: the function ran without error
    labels: list[str] = []
    pool = AnsweringPool({"statusCode": 401, "body": '{"message": "Unauthorized"}'})
    server = ApiServer(
        [Route("api", "$default", "fn")],
        {"fn": pool},
        "127.0.0.1",
        0,
        lambda *args, label: labels.append(label),
    )
    server.start()
    try:
        for response in ({"statusCode": 401, "body": ""}, {"status": "enqueued"}, {"statusCode": "x"}):
            pool.response = response
            _exchange(server, b"POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    finally:
        server.stop()
    assert labels == ["POST /ingest 401", "POST /ingest 200", "POST /ingest 500"]
