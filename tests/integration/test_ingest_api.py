"""The ingest API Lambda with moto (DynamoDB, SQS), called with HTTP API payload 2.0 events:
every success and error case of POST /ingest and GET /logs, cross-tenant attempts, and a
failing queue."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from typing import Any

import pytest

from handlers.dal import aws

from .conftest import LambdaContext
from .ingest_support import IngestStack, Response, capture_logs


@pytest.fixture
def stack(aws, monkeypatch) -> IngestStack:
    return IngestStack(monkeypatch)


@pytest.fixture
def acme(stack) -> str:
    return stack.issue_key("acme")


@pytest.fixture
def beta(stack) -> str:
    return stack.issue_key("beta")


def assert_refused(response, status: int, fragment: str, stack: IngestStack) -> None:
    assert response.status == status, response
    assert set(response.json) == {"error"} and fragment in response.json["error"], response.json
    assert response.headers["Content-Type"] == "application/json"
    assert stack.queue_depth() == 0, "a refused request must not enqueue anything"


# ------------------------------------------------------------------ POST /ingest: accepted
def test_json_record_is_enqueued_as_the_internal_message(stack, acme):
    # Given acme's key and a JSON record with its own log id
    # When it is posted
    response = stack.post({"tenant_id": "acme", "text": "User 555-0199 logged in", "log_id": "a-1"}, key=acme)
    # Then the API answers 202 with the documented body
    assert response.status == 202
    assert response.json == {"status": "enqueued", "tenant_id": "acme", "log_id": "a-1"}
    # and the queue holds one normalized internal message
    [message] = stack.queued_bodies()
    assert set(message) == {"tenant_id", "log_id", "source", "text", "received_at"}
    assert (message["tenant_id"], message["log_id"], message["source"], message["text"]) == (
        "acme",
        "a-1",
        "json",
        "User 555-0199 logged in",
    )
    assert message["received_at"].endswith("Z")


def test_generated_log_id_is_returned(stack, acme):
    response = stack.post({"tenant_id": "acme", "text": "hi"}, key=acme)
    assert response.status == 202
    assert uuid.UUID(response.json["log_id"]).version == 7
    assert stack.queued_bodies()[0]["log_id"] == response.json["log_id"]


def test_json_batch_is_enqueued_in_several_sendmessagebatch_calls(stack, acme):
    # Given 23 records (three SendMessageBatch calls of at most 10)
    records = [{"tenant_id": "acme", "text": f"event {i}", "log_id": f"b-{i:02d}"} for i in range(23)]
    response = stack.post(records, key=acme)
    # Then all are enqueued, and the answer lists their ids in order
    assert response.status == 202
    assert response.json == {
        "status": "enqueued",
        "tenant_id": "acme",
        "log_ids": [r["log_id"] for r in records],
    }
    assert sorted(m["log_id"] for m in stack.queued_bodies()) == [r["log_id"] for r in records]


def test_text_plain_lines_are_records_of_the_header_tenant(stack, acme):
    response = stack.post(
        "GET /a 200\r\n\r\nPOST /b 500 call 555-0199\n",
        key=acme,
        content_type="text/plain; charset=UTF-8",
        headers={"X-Tenant-ID": "acme", "X-Log-ID": "batch-9"},
    )
    assert response.status == 202
    assert response.json == {"status": "enqueued", "tenant_id": "acme", "log_ids": ["batch-9:1", "batch-9:2"]}
    assert sorted((m["log_id"], m["source"], m["text"]) for m in stack.queued_bodies()) == [
        ("batch-9:1", "text", "GET /a 200"),
        ("batch-9:2", "text", "POST /b 500 call 555-0199"),
    ]


def test_single_text_line_answers_log_id(stack, acme):
    response = stack.post("one line", key=acme, content_type="text/plain", headers={"x-tenant-id": "acme"})
    assert response.status == 202 and set(response.json) == {"status", "tenant_id", "log_id"}


@pytest.mark.parametrize(
    "content_type", ["APPLICATION/JSON", "application/json; charset=utf-8", "application/json;charset=UTF8"]
)
def test_content_type_case_and_parameters_are_tolerated(stack, acme, content_type):
    assert stack.post({"tenant_id": "acme", "text": "x"}, key=acme, content_type=content_type).status == 202


def test_base64_encoded_body_is_accepted(stack, acme):
    event = stack.event(
        "POST",
        "/ingest",
        body=json.dumps({"tenant_id": "acme", "text": "ünïcode"}).encode(),
        headers={"content-type": "application/json", "x-api-key": acme},
        base64_body=True,
    )
    response = stack.call(event)
    assert response.status == 202
    assert stack.queued_bodies()[0]["text"] == "ünïcode"


# ------------------------------------------------------------------ POST /ingest: refused
@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "fragment"),
    [
        ('{"tenant_id": "acme", "text": ', "application/json", {}, 400, "malformed JSON"),
        ({"text": "no tenant"}, "application/json", {}, 400, "missing tenant_id"),
        ({"tenant_id": "acme", "text": "  "}, "application/json", {}, 400, "empty text"),
        ({"tenant_id": "acme"}, "application/json", {}, 400, "missing text"),
        (
            {"tenant_id": "acme", "text": "x", "log_id": "no spaces"},
            "application/json",
            {},
            400,
            "invalid log_id",
        ),
        ({"tenant_id": "acme", "text": "x", "lgo_id": "typo"}, "application/json", {}, 400, "unknown field"),
        ([], "application/json", {}, 400, "empty array"),
        ("a line", "text/plain", {}, 400, "missing X-Tenant-ID"),
        ("\n \n", "text/plain", {"x-tenant-id": "acme"}, 400, "empty text"),
        ({"tenant_id": "acme", "text": "x" * 70_000}, "application/json", {}, 413, "MAX_BODY_BYTES"),
        ([{"tenant_id": "acme", "text": "x"}] * 26, "application/json", {}, 413, "MAX_BATCH_RECORDS"),
        ({"tenant_id": "acme", "text": "x" * 17_000}, "application/json", {}, 413, "limit per record"),
        ("<log/>", "application/xml", {}, 415, "unsupported Content-Type"),
        ("x", "text/plain; charset=iso-8859-1", {"x-tenant-id": "acme"}, 415, "unsupported charset"),
        ("x", None, {}, 415, "missing Content-Type"),
    ],
)
def test_bad_input_is_a_4xx_json_error_and_enqueues_nothing(
    stack, acme, body, content_type, headers, status, fragment
):
    response = stack.post(body, key=acme, content_type=content_type, headers=headers)
    assert_refused(response, status, fragment, stack)


def test_whitespace_around_header_values_is_ignored(stack, acme):
    # Given an event whose header values keep the spaces and tabs around them (API Gateway
    # strips them; an event from elsewhere may not)
    headers = {"x-api-key": f" {acme}\t", "x-tenant-id": "acme ", "x-log-id": "\tw-1"}
    response = stack.post("one line", key=None, content_type=" text/plain ", headers=headers)
    # Then they are read without it
    assert (response.status, response.json) == (
        202,
        {"status": "enqueued", "tenant_id": "acme", "log_id": "w-1"},
    )
    listed = stack.logs(None, headers={"x-api-key": acme + " ", "x-tenant-id": " acme"})
    assert listed.status == 200


def test_a_gzip_body_is_a_415_naming_the_coding(stack, acme):
    # Given a gzip-compressed JSON record (API Gateway hands it on base64-encoded)
    record = gzip.compress(json.dumps({"tenant_id": "acme", "text": "zipped", "log_id": "gz-1"}).encode())
    event = stack.event(
        "POST",
        "/ingest",
        body=record,
        base64_body=True,
        headers={"x-api-key": acme, "content-type": "application/json", "content-encoding": "gzip"},
    )
    # Then it is refused for its coding (not as a body that is not UTF-8) and nothing is queued
    assert_refused(stack.call(event), 415, "unsupported Content-Encoding 'gzip'", stack)


def test_missing_unknown_and_disabled_keys_are_401(stack):
    disabled = stack.issue_key("acme", disabled=True)
    record = {"tenant_id": "acme", "text": "x"}
    assert_refused(stack.post(record, key=None), 401, "missing API key", stack)
    assert_refused(stack.post(record, key="hr_" + "x" * 43), 401, "invalid API key", stack)
    assert_refused(stack.post(record, key=disabled), 401, "invalid API key", stack)


def test_a_key_sent_elsewhere_than_the_header_is_not_read_and_the_401_says_so(stack, acme):
    record = json.dumps({"tenant_id": "acme", "text": "x"})
    # Given requests that put acme's key in the query string (under any name) or in an
    # Authorization header instead of x-api-key
    in_query = [
        stack.logs(None, api_key=acme),
        stack.logs(None, token=acme),
        stack.call(stack.event("POST", "/ingest", body=record, query={"x-api-key": f"{acme},"})),
    ]
    bearer = stack.post(record, key=None, headers={"Authorization": f"Bearer {acme}"})
    # Then each is a 401 that enqueues nothing and never repeats the key; one sent in a URL
    # is called exposed, since URLs are logged along the way
    for response in in_query:
        assert_refused(response, 401, "missing API key", stack)
        assert (
            "query string is never read" in response.json["error"] and "revoke it" in response.json["error"]
        )
        assert acme not in response.json["error"]
    assert_refused(bearer, 401, "(the Authorization header is not read)", stack)
    assert acme not in bearer.json["error"]
    # and a request with no key anywhere gets the plain message, as does one whose query
    # string holds nothing with a key's shape (it exposed no key)
    for plain in (
        stack.logs(None, limit="5"),
        stack.call(stack.event("GET", "/logs", query={"key": "foo"})),
        stack.call(stack.event("POST", "/ingest", body=record, query={"x-api-key": "my key"})),
    ):
        assert plain.json == {"error": "missing API key: send your tenant's key in the x-api-key header"}


def test_one_key_with_a_trailing_comma_is_that_key(stack, acme):
    # (a client ending the header with a comma, or sending it again empty: API Gateway joins
    # the values as "<key>,")
    response = stack.post({"tenant_id": "acme", "text": "x"}, key=f"{acme},")
    assert response.status == 202, response.json


def test_authentication_comes_before_reading_the_body(stack):
    assert_refused(stack.post("garbage", key=None, content_type="image/png"), 401, "missing API key", stack)


def test_writing_as_another_tenant_is_forbidden(stack, acme, beta):
    # Given beta's key
    # When it posts a record for acme (JSON field, text header, one record of a batch, JSON + header)
    attempts = [
        stack.post({"tenant_id": "acme", "text": "x"}, key=beta),
        stack.post("x", key=beta, content_type="text/plain", headers={"x-tenant-id": "acme"}),
        stack.post([{"tenant_id": "beta", "text": "ok"}, {"tenant_id": "acme", "text": "x"}], key=beta),
        stack.post([{"text": "x"}], key=beta, headers={"x-tenant-id": "acme"}),
    ]
    # Then every attempt is refused with 403 and nothing reaches the queue
    for response in attempts:
        assert_refused(response, 403, "belongs to tenant 'beta'", stack)


def test_the_query_string_of_a_post_is_checked_not_ignored(stack, acme):
    # Given acme's key and a valid record
    record = json.dumps({"tenant_id": "acme", "text": "x", "log_id": "q-1"})
    headers = {"x-api-key": acme, "content-type": "application/json"}

    def post(query: dict[str, str]):
        return stack.call(stack.event("POST", "/ingest", body=record, headers=headers, query=query))

    # When the query string names another tenant, or carries anything else
    # Then the request is refused (403, 400) and nothing is enqueued
    assert_refused(post({"tenant_id": "beta"}), 403, "names tenant 'beta'", stack)
    assert_refused(post({"log_id": "q-2"}), 400, "unknown query parameter 'log_id'", stack)
    # and naming the key's own tenant is accepted
    assert post({"tenant_id": "acme"}).status == 202


def test_unknown_route_is_404_and_wrong_method_is_405(stack, acme):
    missing = stack.call(stack.event("GET", "/nope", headers={"x-api-key": acme}))
    assert missing.status == 404 and "no route '/nope'" in missing.json["error"]
    wrong = stack.call(stack.event("GET", "/ingest", headers={"x-api-key": acme}))
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST" and "use POST" in wrong.json["error"]
    wrong = stack.call(stack.event("DELETE", "/logs"))
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET"
    assert stack.queue_depth() == 0


# ------------------------------------------------------------------ POST /ingest: queue failures
def test_unavailable_queue_is_a_503_and_the_retry_is_safe(stack, acme, monkeypatch):
    # Given a queue that does not answer
    records = [{"tenant_id": "acme", "text": f"r{i}", "log_id": f"r-{i}"} for i in range(3)]
    healthy = stack.api.settings
    monkeypatch.setattr(
        stack.api, "settings", healthy.model_copy(update={"ingest_queue_url": stack.queue_url + "-gone"})
    )
    # When records are posted
    response = stack.post(records, key=acme)
    # Then the API answers 503, naming the ids that were not enqueued
    assert response.status == 503
    assert "Retry them with the same log_id" in response.json["error"]
    assert response.json["failed_log_ids"] == ["r-0", "r-1", "r-2"]
    assert response.json["enqueued_log_ids"] == []
    # When the queue is back and the client retries the same request
    monkeypatch.setattr(stack.api, "settings", healthy)
    retried = stack.post(records, key=acme)
    # Then it is accepted, and the records are stored once
    assert retried.status == 202 and retried.json["log_ids"] == ["r-0", "r-1", "r-2"]
    stack.drain()
    assert sorted(i["log_id"] for i in stack.all_stored()) == ["r-0", "r-1", "r-2"]


def test_partly_failed_batch_is_a_503_listing_both_halves_and_replay_stores_once(stack, acme, monkeypatch):
    # Given SQS rejects some entries of a SendMessageBatch call
    sqs = aws.api_client("sqs")
    real = sqs.send_message_batch

    def flaky(QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [e for e in Entries if int(e["Id"]) % 2 == 0]
        response = real(QueueUrl=QueueUrl, Entries=kept)
        response["Failed"] = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for e in Entries
            if int(e["Id"]) % 2
        ]
        return response

    monkeypatch.setattr(sqs, "send_message_batch", flaky)
    records = [{"tenant_id": "acme", "text": f"call 555-01{i:02d}", "log_id": f"p-{i}"} for i in range(4)]
    # When a batch is posted
    response = stack.post(records, key=acme)
    # Then the answer is 503 and says exactly what was and was not enqueued
    assert response.status == 503
    assert (response.json["enqueued_log_ids"], response.json["failed_log_ids"]) == (
        ["p-0", "p-2"],
        ["p-1", "p-3"],
    )
    # When the client retries the whole request once SQS recovers
    monkeypatch.setattr(sqs, "send_message_batch", real)
    assert stack.post(records, key=acme).status == 202
    stack.drain()
    # Then every record is stored exactly once
    stored = sorted(i["log_id"] for i in stack.all_stored())
    assert stored == ["p-0", "p-1", "p-2", "p-3"]


def test_unavailable_key_table_is_a_503_not_a_401(stack, acme):
    # Given the key table cannot be read
    stack.configure(TENANT_KEYS_TABLE="no-such-table")
    # Then a request is answered 503 (retry), not 401 (your key is bad)
    response = stack.post({"tenant_id": "acme", "text": "x"}, key=acme)
    assert response.status == 503 and "retry" in response.json["error"]
    assert stack.queue_depth() == 0


# ------------------------------------------------------------------ GET /logs
def ingest_and_store(stack: IngestStack, key: str, tenant: str, texts: list[str], prefix: str) -> None:
    records = [{"tenant_id": tenant, "text": t, "log_id": f"{prefix}-{i:03d}"} for i, t in enumerate(texts)]
    assert stack.post(records, key=key).status == 202
    stack.drain()


def test_logs_returns_only_the_callers_redacted_records(stack, acme, beta):
    # Given both tenants have stored records (beta's with the same log ids as acme's)
    ingest_and_store(stack, acme, "acme", ["acme call 555-0199", "acme plain"], "x")
    ingest_and_store(stack, beta, "beta", ["beta mail b@example.com"], "x")
    # When each lists its logs
    acme_page = stack.logs(acme)
    beta_page = stack.logs(beta)
    # Then each sees only its own records, redacted, without internals
    assert acme_page.status == 200 and acme_page.headers["Cache-Control"] == "no-store"
    assert [(i["tenant_id"], i["log_id"], i["text"]) for i in acme_page.json["items"]] == [
        ("acme", "x-000", "acme call [REDACTED:PHONE]"),
        ("acme", "x-001", "acme plain"),
    ]
    assert [(i["tenant_id"], i["text"]) for i in beta_page.json["items"]] == [
        ("beta", "beta mail [REDACTED:EMAIL]")
    ]
    assert acme_page.json["next_cursor"] is None
    assert set(acme_page.json["items"][0]) == {
        "tenant_id",
        "log_id",
        "source",
        "text",
        "received_at",
        "stored_at",
        "redactions",
    }
    assert acme_page.json["items"][0]["redactions"] == {"phone": 1}


def test_logs_leaves_out_expired_records_dynamodb_has_not_deleted_yet(stack, acme):
    # Given two records, one of them past its ttl (DynamoDB deletes it only eventually)
    ingest_and_store(stack, acme, "acme", ["expired", "live"], "t")
    stack.logs_table.update_item(
        Key={"tenant_id": "acme", "log_id": "t-000"},
        UpdateExpression="SET #ttl = :past",
        ExpressionAttributeNames={"#ttl": "ttl"},
        ExpressionAttributeValues={":past": int(time.time()) - 60},
    )
    # When acme lists its logs, Then only the live one is there
    page = stack.logs(acme)
    assert page.status == 200 and [i["text"] for i in page.json["items"]] == ["live"]


def test_logs_pages_with_an_opaque_cursor(stack, acme):
    ingest_and_store(stack, acme, "acme", [f"line {i}" for i in range(5)], "p")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = stack.logs(acme, limit="2", **({"cursor": cursor} if cursor else {}))
        assert page.status == 200 and len(page.json["items"]) <= 2
        seen += [i["log_id"] for i in page.json["items"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p-{i:03d}" for i in range(5)]


def test_a_page_of_text_that_json_inflates_still_fits_a_lambda_response(stack, acme):
    # 64 records of 16 KiB control characters: one 1 MB DynamoDB page, six times longer
    # as JSON ("\u0001"), over Lambda's 6 MB response limit if sent whole
    with stack.logs_table.batch_writer() as batch:
        for i in range(64):
            batch.put_item(Item={"tenant_id": "acme", "log_id": f"c-{i:03d}", "text": "\x01" * 16_384})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        raw = stack.api.lambda_handler(
            stack.event(
                "GET",
                "/logs",
                headers={"x-api-key": acme},
                query={"limit": "64", **({"cursor": cursor} if cursor else {})},
            ),
            LambdaContext(function_name="ingest"),
        )
        assert len(json.dumps(raw)) < 6_291_456
        page = Response(raw)
        seen += [i["log_id"] for i in page.json["items"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"c-{i:03d}" for i in range(64)]


def test_reading_another_tenants_logs_is_refused(stack, acme, beta):
    # Given acme's records and a cursor from acme's listing
    ingest_and_store(stack, acme, "acme", ["secret a", "secret b"], "s")
    acme_cursor = stack.logs(acme, limit="1").json["next_cursor"]
    assert acme_cursor
    # When beta tries to read them: with acme's cursor, by naming acme, or with acme's header
    attempts = [
        stack.logs(beta, cursor=acme_cursor),
        stack.logs(beta, tenant_id="acme"),
        stack.logs(beta, headers={"x-tenant-id": "acme"}),
    ]
    # Then each is refused with 403, and beta's own listing is empty
    for response in attempts:
        assert response.status == 403 and "error" in response.json, response
    assert stack.logs(beta).json == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "status", "fragment"),
    [
        ({"limit": "0"}, 400, "invalid limit"),
        ({"limit": "1001"}, 400, "invalid limit"),
        ({"limit": "many"}, 400, "invalid limit"),
        ({"cursor": "garbage!"}, 400, "invalid cursor"),
        ({"page": "2"}, 400, "unknown query parameter"),
    ],
)
def test_bad_listing_parameters_are_400(stack, acme, query, status, fragment):
    response = stack.logs(acme, **query)
    assert response.status == status and fragment in response.json["error"]


def test_logs_needs_a_valid_key(stack):
    assert stack.logs(None).status == 401
    refused = stack.logs("hr_" + "y" * 43)
    assert refused.status == 401
    # errors are not cached either (they can name a tenant's ids)
    assert refused.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------ secrets stay out of logs
def test_api_keys_and_log_text_never_reach_the_logs(stack):
    # Given event logging switched on by an operator, a request with a key and PII, and refused ones
    stack.configure(POWERTOOLS_LOGGER_LOG_EVENT="true")
    acme = stack.issue_key("acme")
    with capture_logs(stack.api) as logs:
        stack.post({"tenant_id": "acme", "text": "secret 555-0199 payload"}, key=acme)
        stack.post({"tenant_id": "beta", "text": "secret 555-0199 payload"}, key=acme)
        stack.post("secret 555-0199 payload", key=acme, content_type="text/plain")
        stack.logs(acme)
        # a client's misplaced values, echoed back to it in the 400/403 message
        refused = stack.post("x", key=acme, content_type="text/plain", headers={"X-Tenant-ID": acme})
        assert refused.status == 403 and acme in refused.json["error"]
        stack.post({"text": "x", "log_id": "signup:jane.doe@example.com"}, key=acme)
        stack.logs(acme, tenant_id=acme)
    # Then neither the key nor the text appears in anything the function logged
    out = logs.getvalue()
    assert "records enqueued" in out and "request refused" in out  # the logs were captured
    assert "names tenant '…' but the API key belongs to tenant '…'" in out
    assert acme not in out and "jane.doe" not in out
    assert "555-0199" not in out and "secret" not in out
    # and a refusal is logged as information, not as an error with a traceback
    assert "Traceback" not in out and '"level":"ERROR"' not in out


def test_powertools_debug_mode_prints_no_request(stack, capsys):
    # Given Powertools' development mode switched on by an operator (POWERTOOLS_DEV, the
    # documented "more verbose" switch), which makes the HTTP resolver print every event,
    # x-api-key header and body included, to stdout (CloudWatch), and answer an unexpected
    # error with its traceback
    stack.configure(POWERTOOLS_DEV="true")
    acme = stack.issue_key("acme")
    capsys.readouterr()
    # When a tenant posts a record and lists its logs
    assert stack.post({"tenant_id": "acme", "text": "secret 555-0199 payload"}, key=acme).status == 202
    assert stack.logs(acme).status == 200
    # Then neither the key nor the text reaches the function's output
    printed = capsys.readouterr()
    assert acme not in printed.out + printed.err
    assert "555-0199" not in printed.out + printed.err
