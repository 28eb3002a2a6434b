"""GET /logs parameters and cursors: a cursor can never read across tenants (no AWS)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest

from handlers.logic.ingest.errors import BadRequest, Forbidden
from handlers.logic.ingest.listing import (
    decode_cursor,
    encode_cursor,
    parse_limit,
    parse_page,
    public_item,
)


def b64(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_cursor_round_trips_for_its_tenant():
    # Given the last key of acme's page
    cursor = encode_cursor({"tenant_id": "acme", "log_id": "0190-abc"})
    # Then it is URL-safe and decodes back to the same key, for acme
    assert cursor is not None and set(cursor) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert decode_cursor(cursor, "acme") == {"tenant_id": "acme", "log_id": "0190-abc"}


def test_no_last_key_means_no_cursor():
    assert encode_cursor(None) is None
    assert encode_cursor({}) is None


def test_a_cursor_minted_for_another_tenant_is_forbidden():
    # Given a cursor from beta's listing
    cursor = encode_cursor({"tenant_id": "beta", "log_id": "x"})
    # When acme presents it
    with pytest.raises(Forbidden, match="another tenant"):
        decode_cursor(cursor, "acme")


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !!",
        "%%%",
        b64([1, 2]),
        b64({"tenant_id": "acme"}),
        b64({"tenant_id": "acme", "log_id": "x", "extra": 1}),
        b64({"tenant_id": "acme", "log_id": 5}),
        b64({"tenant_id": "acme", "log_id": "bad id"}),
        b64({"tenant_id": "ACME!", "log_id": "x"}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "é",
        "A" * 2000,
    ],
)
def test_malformed_cursors_are_a_400(cursor):
    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(cursor, "acme")


@pytest.mark.parametrize(
    "damage", [lambda c: c[:4] + "!!" + c[4:], lambda c: c + "==", lambda c: c[:8] + "." + c[8:]]
)
def test_a_damaged_cursor_is_a_400_not_the_same_page(damage):
    # the decoder skipped characters outside its alphabet: damaged cursors read the next page
    cursor = encode_cursor({"tenant_id": "acme", "log_id": "0190-abc"})
    assert cursor is not None and decode_cursor(cursor, "acme")
    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(damage(cursor), "acme")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 50), ("", 50), ("1", 1), ("1000", 1000), ("007", 7), ("0" * 5000 + "7", 7)]
)
def test_limit(value, expected):
    assert parse_limit(value) == expected


@pytest.mark.parametrize("value", ["0", "1001", "-1", "ten", "1.5", "5,6", "\uff11\uff12", "1" * 5000])
def test_bad_limit_is_a_400(value):
    with pytest.raises(BadRequest, match="invalid limit"):
        parse_limit(value)


def test_page_refuses_naming_another_tenant_and_unknown_parameters():
    assert parse_page({"limit": "5", "tenant_id": "acme"}, "acme").limit == 5
    with pytest.raises(Forbidden):
        parse_page({"tenant_id": "beta"}, "acme")
    with pytest.raises(Forbidden):
        parse_page({}, "acme", tenant_header="beta")
    with pytest.raises(BadRequest, match="unknown query parameter 'limt'"):
        parse_page({"limt": "5"}, "acme")


def test_public_item_hides_the_ciphertext_and_ttl():
    item = {
        "tenant_id": "acme",
        "log_id": "1",
        "text": "call [REDACTED:PHONE]",
        "source": "json",
        "received_at": "t1",
        "stored_at": "t2",
        "redactions": {"phone": Decimal(1)},
        "ttl": Decimal(1700000000),
        "original_ciphertext": [b"secret"],
    }
    assert public_item(item) == {
        "tenant_id": "acme",
        "log_id": "1",
        "text": "call [REDACTED:PHONE]",
        "source": "json",
        "received_at": "t1",
        "stored_at": "t2",
        "redactions": {"phone": 1},
    }
