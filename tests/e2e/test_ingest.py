"""The ingest API end to end (issue 6), with real HTTP requests."""

from __future__ import annotations

import json
import time


def test_logs_are_ingested_stored_redacted_and_isolated(stack, tenants):
    (acme, acme_key), (_, beta_key) = tenants.items()
    # When acme posts a JSON record and two lines of text
    status, body = stack.api(
        "/ingest",
        json.dumps({"tenant_id": acme, "log_id": "j-1", "text": "User 555-0199 logged in"}).encode(),
        {"content-type": "application/json", "x-api-key": acme_key},
    )
    assert (status, body) == (202, {"status": "enqueued", "tenant_id": acme, "log_id": "j-1"}), body
    status, body = stack.api(
        "/ingest",
        b"disk almost full\nmail ops@example.com\n",
        {"content-type": "text/plain", "x-tenant-id": acme, "x-api-key": acme_key},
    )
    assert status == 202 and len(body["log_ids"]) == 2
    # and beta tries to write as acme
    status, body = stack.api(
        "/ingest",
        json.dumps({"tenant_id": acme, "text": "sneaky"}).encode(),
        {"content-type": "application/json", "x-api-key": beta_key},
    )
    assert status == 403 and "error" in body
    # Then acme reads back its three records, redacted, once the worker has stored them
    deadline = time.monotonic() + 60
    while True:
        status, page = stack.api("/logs?limit=10", headers={"x-api-key": acme_key})
        assert status == 200
        if len(page["items"]) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    texts = sorted(item["text"] for item in page["items"])
    assert texts == ["User [REDACTED:PHONE] logged in", "disk almost full", "mail [REDACTED:EMAIL]"]
    # and beta sees none of them
    status, page = stack.api("/logs?limit=10", headers={"x-api-key": beta_key})
    assert (status, page["items"]) == (200, [])


def test_bad_requests_get_a_4xx_and_enqueue_nothing(stack, tenants):
    _, key = next(iter(tenants.items()))
    depth = stack.queue_depth(stack.outputs.get("ingest_queue_url"))
    assert (
        stack.api("/ingest", b"{not json", {"content-type": "application/json", "x-api-key": key})[0] == 400
    )
    assert stack.api("/ingest", b"x", {"content-type": "image/png", "x-api-key": key})[0] == 415
    assert stack.api("/ingest", b"{}", {"content-type": "application/json"})[0] == 401
    # a wrong method or path gets the API's own JSON answer, not API Gateway's
    status, answer = stack.api("/ingest")
    assert status == 405 and "use POST" in answer["error"]
    status, answer = stack.api("/nowhere")
    assert status == 404 and "POST /ingest and GET /logs" in answer["error"]
    assert stack.queue_depth(stack.outputs.get("ingest_queue_url")) == depth
