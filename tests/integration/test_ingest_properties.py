"""Property-based tests (hypothesis) of the ingest API Lambda: arbitrary bodies, headers,
content types, methods, paths and query strings, as HTTP API payload 2.0 events.

Invariants:
- the answer is never a 5xx, except 503 when the queue fails (injected here);
- every answer is a JSON object; every 4xx/5xx carries {"error": "..."};
- nothing is ever enqueued unless the answer is 202, and then exactly the answered ids,
  all for the key's tenant, are on the queue.
"""

from __future__ import annotations

import itertools
import json
import string
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from handlers.dal import ingest_queue
from handlers.models.ingest import LOG_ID_PATTERN

from .conftest import LambdaContext
from .ingest_support import IngestStack

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CALLERS = ("acme", "beta", "disabled", "unknown", "malformed", "missing")
CALLER_TENANT = {"acme": "acme", "beta": "beta"}

# ------------------------------------------------------------------ strategies
# Biased towards requests that get far into the handler (a valid key, a matching tenant,
# an accepted media type), with every field free to be anything at all.
tenant_names = st.one_of(st.sampled_from(["acme", "beta", "", "ACME", "acme "]), st.text(max_size=20))
texts = st.one_of(
    st.text(min_size=1, max_size=200),
    st.sampled_from(["call 555-0199", "   ", "", "x" * 17_000, "\ud800", "a\x00b", "\uffff"]),
)
string_log_ids = st.one_of(st.from_regex(LOG_ID_PATTERN, fullmatch=True), st.text(max_size=140))
log_ids = st.one_of(string_log_ids, st.integers(), st.none())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
json_types = st.sampled_from(
    [
        "application/json; charset=latin-1",
        "APPLICATION/JSON; charset=UTF-8",
        "application/json;charset=utf8",
        "application/json",
    ]
)
text_types = st.sampled_from(["text/plain", "text/plain; charset=utf-8", "Text/Plain; format=flowed"])
other_types = st.one_of(
    st.none(),
    st.sampled_from(["application/xml", "multipart/form-data; boundary=x", ";", "", "application/jsonx"]),
    st.text(max_size=40),
)
header_names = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20)
extra_headers = st.dictionaries(header_names, st.text(max_size=40), max_size=3)
odd_bodies = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.sampled_from(["[" * 3000, "1" * 5000, "x" * 70_000, "{}", "[]", "null"]),
)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def requests(draw: st.DrawFn, callers: tuple[str, ...] = CALLERS) -> dict[str, Any]:
    caller = draw(st.sampled_from(callers))
    own = CALLER_TENANT.get(caller, "acme")
    tenants = st.one_of(st.just(own), st.just(own), tenant_names, json_values)
    good_record = st.fixed_dictionaries(
        {"tenant_id": st.just(own), "text": texts}, optional={"log_id": log_ids}
    )
    wild_record = st.fixed_dictionaries(
        {"text": st.one_of(texts, json_values)},
        optional={"tenant_id": tenants, "log_id": log_ids, "extra": json_values},
    )
    record = st.one_of(good_record, good_record, good_record, wild_record)
    kind = draw(st.sampled_from(["other", "text", "json", "json"]))
    if kind == "json":
        content_type = draw(json_types)
        batches = st.one_of(st.lists(good_record, max_size=12), st.lists(record, max_size=30))
        body = draw(st.one_of(record.map(_dump), record.map(_dump), batches.map(_dump), odd_bodies))
    elif kind == "text":
        content_type = draw(text_types)
        lines = st.lists(st.one_of(texts, st.sampled_from(["", "  ", "GET /x 200"])), max_size=30)
        body = draw(st.one_of(lines.map("\n".join), lines.map("\r\n".join), odd_bodies))
    else:
        content_type = draw(other_types)
        body = draw(odd_bodies)
    return {
        "caller": caller,
        "body": body,
        "base64": draw(st.sampled_from([False, False, True])),
        "content_type": content_type,
        "tenant_header": draw(st.one_of(st.none(), st.just(own), st.just(own), tenant_names)),
        "log_id_header": draw(st.one_of(st.none(), st.none(), string_log_ids)) if kind == "text" else None,
        "extra": draw(extra_headers),
    }


# ------------------------------------------------------------------ harness
class Harness:
    def __init__(self, stack: IngestStack):
        self.stack = stack
        self.keys = {
            "acme": stack.issue_key("acme"),
            "beta": stack.issue_key("beta"),
            "disabled": stack.issue_key("acme", disabled=True),
            "unknown": "hr_" + "u" * 43,
            "malformed": "not a key at all",
        }
        self.queues = itertools.count()

    def fresh_queue(self) -> str:
        """A new, empty queue per example: what it holds afterwards is what that request enqueued."""
        url = self.stack.sqs.create_queue(QueueName=f"ingest-{next(self.queues)}")["QueueUrl"]
        self.stack.api.settings = self.stack.api.settings.model_copy(update={"ingest_queue_url": url})
        return url

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        headers = dict(request["extra"])
        for name, value in (
            ("x-api-key", self.keys.get(request["caller"])),
            ("content-type", request["content_type"]),
            ("x-tenant-id", request["tenant_header"]),
            ("x-log-id", request["log_id_header"]),
        ):
            if value is not None:
                headers[name] = value
            else:
                headers.pop(name, None)
        body = request["body"]
        base64_body = request["base64"] or isinstance(body, bytes)
        event = self.stack.event("POST", "/ingest", body=body, headers=headers, base64_body=base64_body)
        if isinstance(body, str) and request["base64"] and body and len(body) % 3 == 1:
            event["body"] = body  # marked base64 but is not: must be a 400, not a crash
        return self.stack.api.lambda_handler(event, LambdaContext())

    def drain(self, url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while batch := self.stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            messages += [json.loads(m["Body"]) for m in batch]
        return messages


def check_shape(raw: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(raw["body"])
    assert isinstance(body, dict)
    assert raw["headers"]["Content-Type"] == "application/json"
    if raw["statusCode"] >= 400:
        assert isinstance(body.get("error"), str) and body["error"]
    return body


@pytest.fixture
def harness(aws, monkeypatch) -> Harness:
    return Harness(IngestStack(monkeypatch))


# ------------------------------------------------------------------ properties
def check_ingest(harness: Harness, request: dict[str, Any]) -> None:
    url = harness.fresh_queue()
    raw = harness.send(request)
    status = raw["statusCode"]
    body = check_shape(raw)
    queued = harness.drain(url)
    note(f"status {status}")
    assert status in {202, 400, 401, 403, 413, 415}, (status, body)
    if status != 202:
        assert queued == [], f"{status} but {len(queued)} messages enqueued"
        return
    tenant = CALLER_TENANT[request["caller"]]
    ids = body.get("log_ids") or [body["log_id"]]
    assert body["status"] == "enqueued" and body["tenant_id"] == tenant
    assert sorted(m["log_id"] for m in queued) == sorted(ids)
    assert {m["tenant_id"] for m in queued} == {tenant}


@SETTINGS
@given(request=requests())
def test_any_caller_never_gets_a_5xx_nor_enqueues_on_a_4xx(harness, request):
    check_ingest(harness, request)


@SETTINGS
@given(request=requests(callers=("acme", "beta")))
def test_authenticated_tenants_enqueue_exactly_what_is_accepted(harness, request):
    check_ingest(harness, request)


@SETTINGS
@given(
    request=requests(callers=("acme", "beta")),
    failure=st.sampled_from(["raise", "reject_all", "reject_some"]),
)
def test_a_failing_queue_is_the_only_5xx(harness, monkeypatch, request, failure):
    url = harness.fresh_queue()
    real_client = ingest_queue.api_client

    class FailingSqs:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            if failure == "raise":
                raise ClientError(
                    {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch"
                )
            rejected = Entries if failure == "reject_all" else Entries[1::2]
            kept = [e for e in Entries if e not in rejected]
            response = real_client("sqs").send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
            response["Failed"] = [
                {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in rejected
            ]
            return response

    with monkeypatch.context() as patch:
        patch.setattr(ingest_queue, "api_client", lambda _service: FailingSqs())
        raw = harness.send(request)
    status = raw["statusCode"]
    body = check_shape(raw)
    queued = harness.drain(url)
    note(f"status {status}")
    assert status in {202, 400, 401, 403, 413, 415, 503}, (status, body)
    if status == 202:  # only possible when nothing had to fail: a single record with reject_some
        assert failure == "reject_some" and len(queued) == 1
    elif status == 503:
        assert set(body) == {"error", "tenant_id", "enqueued_log_ids", "failed_log_ids"}
        assert body["failed_log_ids"] and sorted(m["log_id"] for m in queued) == sorted(
            body["enqueued_log_ids"]
        )
    else:
        assert queued == []


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    path=st.one_of(
        st.sampled_from(["/logs", "/ingest"]),
        st.sampled_from(["/logs", "/ingest", "/", "/logs/", "/ingest/x"]),
        st.text(max_size=30).map("/{}".format),
    ),
    query=st.dictionaries(
        st.sampled_from(["limit", "cursor", "tenant_id", "page", "x"]),
        st.one_of(st.text(max_size=30), st.integers(-5, 2000).map(str)),
        max_size=3,
    ),
    caller=st.one_of(st.sampled_from(["acme", "beta"]), st.sampled_from(CALLERS)),
)
def test_any_route_method_and_query_gets_a_json_answer(harness, method, path, query, caller):
    headers = {"x-api-key": harness.keys[caller]} if caller in harness.keys else {}
    event = harness.stack.event(method, path, headers=headers, query=query or None)
    raw = harness.stack.api.lambda_handler(event, LambdaContext())
    body = check_shape(raw)
    note(f"status {raw['statusCode']}")
    assert raw["statusCode"] in {200, 202, 400, 401, 403, 404, 405, 413, 415}, (raw["statusCode"], body)
    if raw["statusCode"] == 200:
        assert method == "GET" and path == "/logs"
        assert all(item["tenant_id"] == CALLER_TENANT[caller] for item in body["items"])
