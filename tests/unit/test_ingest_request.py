"""POST /ingest request parsing: formats, limits, tenants and every 4xx (no AWS)."""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.logic.ingest.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from handlers.logic.ingest.request import HttpInput, Limits, media_type, parse_ingest
from handlers.models.ingest import MAX_TEXT_BYTES, IngestMessage

NOW = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
LIMITS = Limits(max_body_bytes=4096, max_batch_records=5)


def parse(body: Any, content_type: str | None = "application/json", caller: str = "acme", **kw: Any):
    if not isinstance(body, str | None):
        body = json.dumps(body, ensure_ascii=False)
    return parse_ingest(HttpInput(content_type=content_type, body=body, **kw), caller, LIMITS, NOW)


def refused(expected: type[ApiError], *args: Any, **kw: Any) -> str:
    with pytest.raises(expected) as caught:
        parse(*args, **kw)
    assert type(caught.value) is expected
    return caught.value.message


# ---------------------------------------------------------------------------- JSON
def test_single_json_record_is_normalized():
    # Given one JSON record with a client log id
    # When it is parsed for its own tenant
    accepted = parse({"tenant_id": "acme", "text": "User 555-0199 logged in", "log_id": "abc-1"})
    # Then it becomes one internal message, answered with log_id (not log_ids)
    [message] = accepted.messages
    assert message == IngestMessage(
        tenant_id="acme", log_id="abc-1", source="json", text="User 555-0199 logged in", received_at=NOW
    )
    assert accepted.response("acme") == {"status": "enqueued", "tenant_id": "acme", "log_id": "abc-1"}
    # and its queue body is the documented internal message
    assert json.loads(message.to_json()) == {
        "tenant_id": "acme",
        "log_id": "abc-1",
        "source": "json",
        "text": "User 555-0199 logged in",
        "received_at": "2025-03-01T12:00:00.123Z",
    }


def test_missing_log_id_is_generated_as_a_time_ordered_uuid():
    accepted = parse({"tenant_id": "acme", "text": "hello", "log_id": None})
    log_id = accepted.messages[0].log_id
    assert uuid.UUID(log_id).version == 7


def test_json_array_is_a_batch_answered_with_log_ids_in_order():
    records = [{"tenant_id": "acme", "text": f"line {i}", "log_id": f"id-{i}"} for i in range(5)]
    accepted = parse(records)
    assert [m.text for m in accepted.messages] == [f"line {i}" for i in range(5)]
    assert accepted.response("acme") == {
        "status": "enqueued",
        "tenant_id": "acme",
        "log_ids": ["id-0", "id-1", "id-2", "id-3", "id-4"],
    }


def test_a_one_element_array_is_still_answered_as_a_batch():
    accepted = parse([{"tenant_id": "acme", "text": "x"}])
    assert list(accepted.response("acme")) == ["status", "tenant_id", "log_ids"]


def test_records_may_take_the_tenant_from_the_header():
    accepted = parse([{"text": "a"}, {"text": "b", "tenant_id": "acme"}], tenant_header="acme")
    assert {m.tenant_id for m in accepted.messages} == {"acme"}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_content_type_tolerates_case_and_parameters(content_type):
    assert parse({"tenant_id": "acme", "text": "x"}, content_type=content_type).messages


def test_utf8_bom_and_unicode_text_are_accepted():
    body = "\ufeff" + json.dumps({"tenant_id": "acme", "text": "été ✓ 😀"}, ensure_ascii=False)
    assert parse(body).messages[0].text == "été ✓ 😀"


def test_base64_encoded_body_is_decoded():
    raw = json.dumps({"tenant_id": "acme", "text": "x"}).encode()
    accepted = parse(base64.b64encode(raw).decode(), is_base64_encoded=True)
    assert accepted.messages[0].text == "x"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"tenant_id": "acme", "text": ', "malformed JSON"),
        ("not json", "malformed JSON"),
        ("", "empty body"),
        ("   ", "empty body"),
        ('{"tenant_id": "acme", "tenant_id": "acme", "text": "x"}', "appears twice"),
        ("[" * 2000 + "]" * 2000, "nested too deeply"),
        ('"just a string"', "expected a JSON object"),
        ("42", "expected a JSON object"),
        ("null", "expected a JSON object"),
        ("[]", "empty array"),
        ('[{"tenant_id": "acme", "text": "x"}, 3]', "record 2: each array element must be a JSON object"),
    ],
)
def test_malformed_json_is_a_400(body, fragment):
    assert fragment in refused(BadRequest, body)


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ({"tenant_id": "acme"}, "missing text"),
        ({"tenant_id": "acme", "text": ""}, "empty text"),
        ({"tenant_id": "acme", "text": " \n\t"}, "empty text"),
        ({"tenant_id": "acme", "text": 5}, "text must be a string, got a number"),
        ({"tenant_id": "acme", "text": ["a"]}, "text must be a string, got an array"),
        ({"text": "x"}, "missing tenant_id"),
        ({"tenant_id": None, "text": "x"}, "missing tenant_id"),
        ({"tenant_id": "", "text": "x"}, "empty tenant_id"),
        ({"tenant_id": 7, "text": "x"}, "tenant_id must be a string"),
        ({"tenant_id": "acme", "text": "x", "log_id": "has space"}, "invalid log_id 'has space'"),
        ({"tenant_id": "acme", "text": "x", "log_id": "a" * 129}, "invalid log_id"),
        ({"tenant_id": "acme", "text": "x", "log_id": "ok\n"}, "invalid log_id"),
        ({"tenant_id": "acme", "text": "x", "log_id": 12}, "invalid log_id a number"),
        ({"tenant_id": "acme", "text": "x", "logid": "typo"}, "unknown field 'logid'"),
    ],
)
def test_invalid_record_is_a_400_saying_what_is_wrong(record, fragment):
    assert fragment in refused(BadRequest, record)


def test_numbers_too_long_for_python_are_a_400_not_a_crash():
    limits = Limits(max_body_bytes=100_000, max_batch_records=5)
    digits = sys.get_int_max_str_digits()
    with pytest.raises(BadRequest) as refused:
        parse_ingest(HttpInput("application/json", "1" * (digits + 1)), "acme", limits, NOW)
    assert str(refused.value) == f"malformed JSON: a number has more than {digits} digits"


def test_lone_surrogates_are_refused_escaped_or_raw():
    # an escaped lone surrogate parses into a string no store can encode
    assert "not valid Unicode" in refused(BadRequest, '{"tenant_id": "acme", "text": "a\\ud800b"}')
    # a raw one is not UTF-8 at all
    assert "not valid UTF-8" in refused(BadRequest, '{"tenant_id": "acme", "text": "a\ud800b"}')


def test_errors_in_a_batch_name_the_record():
    message = refused(BadRequest, [{"tenant_id": "acme", "text": "ok"}, {"tenant_id": "acme", "text": ""}])
    assert message == "record 2: empty text"  # counted from 1, as lines are


def test_a_log_id_twice_in_one_request_is_refused():
    records = [
        {"tenant_id": "acme", "text": "a", "log_id": "same"},
        {"tenant_id": "acme", "text": "b", "log_id": "same"},
    ]
    assert "appears more than once" in refused(BadRequest, records)


def test_x_log_id_header_is_refused_with_json():
    assert "X-Log-ID" in refused(BadRequest, {"tenant_id": "acme", "text": "x"}, log_id_header="abc")


# ---------------------------------------------------------------------------- tenants
def test_a_record_naming_another_tenant_is_forbidden():
    # Given acme's key and a record for beta
    message = refused(Forbidden, {"tenant_id": "beta", "text": "x"}, caller="acme")
    # Then the refusal says why without trusting the named tenant
    assert "names tenant 'beta'" in message and "belongs to tenant 'acme'" in message


def test_one_foreign_record_forbids_the_whole_batch_even_after_invalid_ones():
    records = [{"tenant_id": "acme", "text": ""}, {"tenant_id": "beta", "text": "x"}]
    assert "record 2: tenant_id names tenant 'beta'" in refused(Forbidden, records)


def test_a_foreign_x_tenant_id_header_is_forbidden_with_json_too():
    refused(Forbidden, {"tenant_id": "acme", "text": "x"}, tenant_header="beta")


def test_tenant_ids_are_compared_exactly():
    refused(Forbidden, {"tenant_id": "ACME", "text": "x"})
    refused(Forbidden, {"tenant_id": "acme ", "text": "x"})


def test_a_tenant_id_query_parameter_must_name_the_keys_tenant():
    # Given a request whose query string names another tenant (the body names the key's)
    # Then it is refused like any other request naming another tenant
    message = refused(Forbidden, {"tenant_id": "acme", "text": "x"}, query={"tenant_id": "beta"})
    assert "tenant_id query parameter names tenant 'beta'" in message
    # and one naming the key's own tenant changes nothing
    accepted = parse({"tenant_id": "acme", "text": "x", "log_id": "q-1"}, query={"tenant_id": "acme"})
    assert [m.log_id for m in accepted.messages] == ["q-1"]


@pytest.mark.parametrize("name", ["log_id", "x-api-key", "text"])
def test_other_query_parameters_are_a_400_not_ignored(name):
    # a log_id in the query string would otherwise be dropped and a new id generated
    message = refused(BadRequest, {"tenant_id": "acme", "text": "x"}, query={name: "req-1"})
    assert f"unknown query parameter {name!r}" in message


# ---------------------------------------------------------------------------- text/plain
def test_text_plain_is_one_record_per_non_blank_line():
    body = "first line\r\n\n   \nsecond line\n"
    accepted = parse(body, content_type="text/plain; charset=utf-8", tenant_header="acme")
    assert [(m.text, m.source, m.tenant_id) for m in accepted.messages] == [
        ("first line", "text", "acme"),
        ("second line", "text", "acme"),
    ]
    assert len(accepted.response("acme")["log_ids"]) == 2


def test_a_single_text_line_is_answered_with_log_id():
    accepted = parse("just one", content_type="text/plain", tenant_header="acme")
    assert set(accepted.response("acme")) == {"status", "tenant_id", "log_id"}


def test_x_log_id_names_text_records_for_safe_retries():
    one = parse("only", content_type="text/plain", tenant_header="acme", log_id_header="req-7")
    assert [m.log_id for m in one.messages] == ["req-7"]
    many = parse("a\n\nb\nc", content_type="text/plain", tenant_header="acme", log_id_header="req-7")
    assert [m.log_id for m in many.messages] == ["req-7:1", "req-7:2", "req-7:3"]


@pytest.mark.parametrize(
    ("kwargs", "expected", "fragment"),
    [
        ({}, BadRequest, "missing X-Tenant-ID header"),
        ({"tenant_header": ""}, BadRequest, "missing X-Tenant-ID header"),
        ({"tenant_header": "beta"}, Forbidden, "names tenant 'beta'"),
        ({"tenant_header": "acme", "log_id_header": "bad id"}, BadRequest, "invalid X-Log-ID"),
        ({"tenant_header": "acme", "log_id_header": "a" * 127}, BadRequest, "too long to number"),
    ],
)
def test_text_plain_errors(kwargs, expected, fragment):
    assert fragment in refused(expected, "a\nb", content_type="text/plain", **kwargs)


@pytest.mark.parametrize("body", ["", "\n\n", "  \r\n \t "])
def test_blank_text_plain_is_a_400(body):
    assert "empty text" in refused(BadRequest, body, content_type="text/plain", tenant_header="acme")


# ---------------------------------------------------------------------------- media type and encoding
@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        (None, "missing Content-Type"),
        ("", "missing Content-Type"),
        ("application/xml", "unsupported Content-Type 'application/xml'"),
        ("text/html; charset=utf-8", "unsupported Content-Type 'text/html'"),
        ("application/json-seq", "unsupported Content-Type"),
        ("application/json; charset=latin-1", "unsupported charset 'latin-1'"),
    ],
)
def test_unsupported_media_type_is_a_415(content_type, fragment):
    assert fragment in refused(
        UnsupportedMediaType, {"tenant_id": "acme", "text": "x"}, content_type=content_type
    )


@pytest.mark.parametrize(
    ("coding", "named"),
    [("gzip", "'gzip'"), ("GZIP ", "'gzip'"), ("br", "'br'"), ("identity, deflate", "'deflate'")],
)
def test_a_compressed_body_is_a_415_naming_its_coding(coding, named):
    # Given a body announced as compressed (its bytes cannot be read as UTF-8 as they are)
    record = {"tenant_id": "acme", "text": "x"}
    # Then the request is refused for its coding, not as invalid UTF-8
    message = refused(UnsupportedMediaType, record, content_encoding=coding)
    assert f"unsupported Content-Encoding {named}" in message and "uncompressed" in message
    # even when the body is also too large or not UTF-8
    refused(UnsupportedMediaType, "x" * 5000, content_encoding=coding)
    refused(UnsupportedMediaType, "/wA=", is_base64_encoded=True, content_encoding=coding)


@pytest.mark.parametrize("coding", [None, "identity", " Identity "])
def test_an_identity_body_is_read_as_sent(coding):
    assert parse({"tenant_id": "acme", "text": "x"}, content_encoding=coding).messages[0].text == "x"


def test_media_type_is_checked_before_the_tenant_or_the_body():
    refused(UnsupportedMediaType, "garbage", content_type="image/png", caller="acme", tenant_header="beta")
    assert media_type("TEXT/PLAIN;format=flowed") == "text/plain"


def test_invalid_utf8_and_invalid_base64_are_400():
    latin1 = base64.b64encode('{"tenant_id": "acme", "text": "caf\xe9"}'.encode("latin-1")).decode()
    assert "not valid UTF-8" in refused(BadRequest, latin1, is_base64_encoded=True)
    assert "not valid base64" in refused(BadRequest, "%%%not base64", is_base64_encoded=True)


# ---------------------------------------------------------------------------- limits
def test_oversize_body_is_a_413_even_when_base64_encoded():
    big = json.dumps({"tenant_id": "acme", "text": "x" * 5000})
    assert "limit is 4096 (MAX_BODY_BYTES)" in refused(PayloadTooLarge, big)
    encoded = base64.b64encode(big.encode()).decode()
    refused(PayloadTooLarge, encoded, is_base64_encoded=True)
    for size in (6000, 6001, 6002):  # the size said is the decoded size, padding and all
        encoded = base64.b64encode(b"x" * size).decode()
        assert f"the body is {size} bytes" in refused(PayloadTooLarge, encoded, is_base64_encoded=True)


def test_body_limit_counts_bytes_not_characters():
    # 2000 two-byte characters: 2000 characters, 4000+ bytes
    assert parse({"tenant_id": "acme", "text": "é" * 2000}).messages
    refused(PayloadTooLarge, {"tenant_id": "acme", "text": "é" * 2100})


def test_too_many_records_is_a_413_naming_the_limit():
    records = [{"tenant_id": "acme", "text": "x"}] * 6
    assert "6 records; the limit is 5 (MAX_BATCH_RECORDS)" in refused(PayloadTooLarge, records)
    lines = "\n".join(["x"] * 6)
    refused(PayloadTooLarge, lines, content_type="text/plain", tenant_header="acme")


def test_another_tenant_is_refused_before_the_record_count_in_both_formats():
    records = [{"tenant_id": "acme", "text": "x"}] * 5 + [{"tenant_id": "beta", "text": "x"}]
    refused(Forbidden, records)
    refused(Forbidden, "\n".join(["x"] * 6), content_type="text/plain", tenant_header="beta")


def test_a_record_larger_than_the_text_limit_is_a_413():
    limits = Limits(max_body_bytes=1_000_000, max_batch_records=5)
    body = json.dumps({"tenant_id": "acme", "text": "x" * (MAX_TEXT_BYTES + 1)})
    with pytest.raises(PayloadTooLarge, match="limit per record is 16384"):
        parse_ingest(HttpInput("application/json", body), "acme", limits, NOW)
    at_limit = json.dumps({"tenant_id": "acme", "text": "x" * MAX_TEXT_BYTES})
    assert parse_ingest(HttpInput("application/json", at_limit), "acme", limits, NOW).messages


def test_queue_body_is_ascii_json_whatever_the_text():
    # Given text with characters SQS refuses raw (U+FFFF) and control characters
    text = "a\uffffb\x00c\U0001f600"
    message = parse({"tenant_id": "acme", "text": text}).messages[0]
    body = message.to_json()
    # Then the body is pure ASCII and round-trips to the same text
    assert body.isascii()
    assert IngestMessage.model_validate_json(body).text == text
