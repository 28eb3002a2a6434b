"""Property-based tests of request parsing (no AWS): whatever arrives, parse_ingest either
accepts records that satisfy every invariant the worker relies on, or raises a 4xx ApiError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.logic.ingest.errors import ApiError
from handlers.logic.ingest.ids import is_log_id
from handlers.logic.ingest.request import HttpInput, Limits, parse_ingest
from handlers.models.ingest import MAX_TEXT_BYTES, IngestMessage

LIMITS = Limits(max_body_bytes=8192, max_batch_records=10)
NOW = datetime(2025, 1, 1, tzinfo=UTC)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
records = st.dictionaries(
    st.sampled_from(["tenant_id", "text", "log_id", "other"]),
    st.one_of(st.sampled_from(["acme", "beta", "", " ", "id-1", "id-1"]), st.text(max_size=40), values),
    max_size=4,
)
bodies = st.one_of(
    st.text(max_size=400),
    records.map(json.dumps),
    st.lists(records, max_size=12).map(json.dumps),
    values.map(json.dumps),
)
content_types = st.one_of(
    st.sampled_from(
        ["application/json", "text/plain", "TEXT/PLAIN; charset=utf-8", "application/json; charset=x"]
    ),
    st.none(),
    st.text(max_size=30),
)
optional_text = st.one_of(st.none(), st.sampled_from(["acme", "beta", ""]), st.text(max_size=30))


@settings(max_examples=400, deadline=None)
@given(
    body=bodies,
    content_type=content_types,
    is_base64=st.booleans(),
    tenant_header=optional_text,
    log_id_header=optional_text,
)
def test_parse_accepts_only_valid_records_of_the_caller(
    body, content_type, is_base64, tenant_header, log_id_header
):
    request = HttpInput(content_type, body, is_base64, tenant_header, log_id_header)
    try:
        accepted = parse_ingest(request, "acme", LIMITS, NOW)
    except ApiError as error:
        assert 400 <= error.status < 500 and error.message
        return
    messages: tuple[IngestMessage, ...] = accepted.messages
    assert 1 <= len(messages) <= LIMITS.max_batch_records
    assert all(m.tenant_id == "acme" for m in messages)
    assert all(m.text.strip() and len(m.text.encode()) <= MAX_TEXT_BYTES for m in messages)
    assert all(is_log_id(m.log_id) for m in messages)
    assert len({m.log_id for m in messages}) == len(messages)
    # every message survives the trip through the queue unchanged
    assert all(IngestMessage.model_validate_json(m.to_json()) == m for m in messages)
    response: dict[str, Any] = accepted.response("acme")
    assert response.get("log_ids", [response.get("log_id")]) == [m.log_id for m in messages]
