"""GET /logs: query parameters, opaque cursors, and what a stored item shows its tenant.

A cursor is the DynamoDB ``LastEvaluatedKey`` of the previous page, as base64url JSON. It
is not signed and need not be: every query is on the caller's own partition, and a cursor
must name that partition too. A forged cursor can therefore only move the start of a page
within the caller's own records; a cursor minted for another tenant is refused (403).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from handlers.models.ingest import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PUBLIC_LOG_FIELDS

from .errors import BadRequest, Forbidden, shown
from .ids import is_log_id, is_tenant_id

QUERY_PARAMETERS = ("limit", "cursor", "tenant_id")
MAX_CURSOR_CHARS = 1024


@dataclass(frozen=True)
class Page:
    limit: int
    start_key: dict[str, str] | None


def parse_page(params: Mapping[str, str], caller_tenant: str, tenant_header: str | None = None) -> Page:
    """``?limit=&cursor=`` (and optionally ``tenant_id``, which must be the caller's)."""
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {shown(unknown[0])} (allowed: {', '.join(QUERY_PARAMETERS)})"
        )
    for named, what in ((params.get("tenant_id"), "tenant_id"), (tenant_header, "the X-Tenant-ID header")):
        if named and named != caller_tenant:
            raise Forbidden(
                f"{what} names tenant {shown(named)} but the API key belongs to tenant {caller_tenant!r}; "
                "a key can only read its own tenant's logs"
            )
    return Page(
        limit=parse_limit(params.get("limit")), start_key=decode_cursor(params.get("cursor"), caller_tenant)
    )


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    significant = value.lstrip("0")  # Python refuses to convert over 4,300 digits
    if (
        not (value.isascii() and value.isdigit())
        or len(significant) > len(str(MAX_PAGE_SIZE))
        or not 1 <= int(significant or "0") <= MAX_PAGE_SIZE
    ):
        raise BadRequest(f"invalid limit {shown(value)}: use a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(significant)


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    document = {"tenant_id": str(last_key["tenant_id"]), "log_id": str(last_key["log_id"])}
    raw = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, caller_tenant: str) -> dict[str, str] | None:
    if cursor is None or cursor == "":
        return None
    invalid = BadRequest("invalid cursor: pass back next_cursor from the previous page unchanged")
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise invalid from None
    if not (
        isinstance(document, dict)
        and set(document) == {"tenant_id", "log_id"}
        and is_tenant_id(document["tenant_id"])
        and is_log_id(document["log_id"])
        # the decoder skips characters outside the alphabet: only the exact encoding is valid
        and encode_cursor(document) == cursor
    ):
        raise invalid
    if document["tenant_id"] != caller_tenant:
        raise Forbidden(
            "the cursor belongs to another tenant's listing; a key can only read its own tenant's logs"
        )
    return {"tenant_id": document["tenant_id"], "log_id": document["log_id"]}


# A synchronous Lambda response is at most 6 MB. A DynamoDB page holds up to 1 MB of items,
# but JSON can make text 6 times longer ("\x01" is "\u0001") and the Lambda envelope
# escapes it once more (up to twice again): pages stop at 2.5 MB of JSON items.
PAGE_JSON_BYTES = 2_500_000


def page_body(
    items: Sequence[Mapping[str, Any]], last_key: Mapping[str, Any] | None, budget: int = PAGE_JSON_BYTES
) -> dict[str, Any]:
    """The ``GET /logs`` body for one DynamoDB page: its items as the tenant sees them, cut
    short (with a cursor at the last item kept) when their JSON would exceed ``budget``."""
    shown_items: list[dict[str, Any]] = []
    size = 0
    for item in items:
        public = public_item(item)
        size += len(json.dumps(public))
        if shown_items and size > budget:
            last = shown_items[-1]
            last_key = {"tenant_id": last["tenant_id"], "log_id": last["log_id"]}
            break
        shown_items.append(public)
    return {"items": shown_items, "next_cursor": encode_cursor(last_key)}


def public_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored item as its tenant sees it (numbers back to int, no ciphertext, no TTL)."""
    return {name: _plain(item[name]) for name in PUBLIC_LOG_FIELDS if name in item}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
