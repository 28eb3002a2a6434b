"""POST /ingest: an HTTP request -> validated internal messages, or a 4xx ``ApiError``.

Pure: no AWS, no HTTP framework. The order of the checks decides which error a request
with several problems gets: 403/400 (query parameters: only ``tenant_id``, naming the
key's tenant) -> 415 (media type, content coding) -> 413 (body size) -> 400
(encoding, JSON, shape) -> 403 (a tenant other than the key's) -> 400 (missing tenant,
fields) -> 413 (record count, text size).

Formats (docs/ingest-api.md):

- ``application/json``: one object ``{"tenant_id", "text", "log_id"?}`` or an array of up
  to ``max_batch_records`` of them. A record may omit ``tenant_id`` when the request has an
  ``X-Tenant-ID`` header. Unknown fields are refused (a misspelt ``log_id`` would otherwise
  silently lose the client its retry safety).
- ``text/plain``: one record per non-blank line, tenant in ``X-Tenant-ID``. An optional
  ``X-Log-ID`` header names the records: a single line gets that id, line *n* of several
  gets ``<X-Log-ID>:<n>``, so a retried request is deduplicated like a JSON one.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from handlers.models.ingest import MAX_TEXT_BYTES, IngestMessage, Source

from .errors import BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType, shown
from .ids import is_log_id, new_log_id

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain"
ACCEPTED_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
RECORD_FIELDS = ("tenant_id", "text", "log_id")
LOG_ID_RULE = "1-128 characters from A-Z a-z 0-9 . _ : -"
# POST /ingest reads nothing from the query string; a tenant_id there must still be the key's.
QUERY_PARAMETERS = ("tenant_id",)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_batch_records: int
    max_text_bytes: int = MAX_TEXT_BYTES


@dataclass(frozen=True)
class HttpInput:
    """The parts of the HTTP request that POST /ingest reads."""

    content_type: str | None
    body: str | None
    is_base64_encoded: bool = False
    tenant_header: str | None = None  # X-Tenant-ID
    log_id_header: str | None = None  # X-Log-ID
    content_encoding: str | None = None  # Content-Encoding
    query: Mapping[str, str] = field(default_factory=dict)  # the query string's parameters


@dataclass(frozen=True)
class Accepted:
    messages: tuple[IngestMessage, ...]
    batch: bool  # a JSON array or several text lines: answered with "log_ids"

    def response(self, tenant_id: str) -> dict[str, Any]:
        ids = [m.log_id for m in self.messages]
        if self.batch:
            return {"status": "enqueued", "tenant_id": tenant_id, "log_ids": ids}
        return {"status": "enqueued", "tenant_id": tenant_id, "log_id": ids[0]}


def parse_ingest(request: HttpInput, caller_tenant: str, limits: Limits, received_at: datetime) -> Accepted:
    """Validate and normalize one POST /ingest request made with ``caller_tenant``'s key."""
    check_query(request.query, caller_tenant)
    kind = media_type(request.content_type)
    identity_coding(request.content_encoding)
    raw = body_bytes(request.body, request.is_base64_encoded, limits.max_body_bytes)
    text = decode_utf8(raw)
    if kind == JSON_TYPE:
        if request.log_id_header is not None:
            raise BadRequest(
                "the X-Log-ID header applies to text/plain bodies only; give each JSON record a log_id"
            )
        return _json_records(text, request.tenant_header, caller_tenant, limits, received_at)
    return _text_records(text, request, caller_tenant, limits, received_at)


# ----------------------------------------------------------------------------- query
def check_query(params: Mapping[str, str], caller: str) -> None:
    """POST /ingest takes its records from the body only. A ``tenant_id`` parameter naming
    another tenant is a 403, as anywhere else; any other parameter is a 400, so that
    ``?log_id=...`` cannot silently cost the client its retry safety."""
    _check_tenant(params.get("tenant_id"), caller, "the tenant_id query parameter")
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {shown(unknown[0])}: POST /ingest reads its records from the body "
            "(a record's log_id is a field of a JSON record, or the X-Log-ID header with text/plain)"
        )


# ----------------------------------------------------------------------------- media type
def media_type(header: str | None) -> str:
    """The accepted media type named by a Content-Type header (case and parameters
    tolerated: ``Application/JSON; charset=UTF-8``), or 415."""
    if header is None or not header.strip():
        raise UnsupportedMediaType("missing Content-Type header: use application/json or text/plain")
    kind, *params = header.split(";")
    kind = kind.strip().lower()
    if kind not in (JSON_TYPE, TEXT_TYPE):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {shown(kind)}: use application/json or text/plain"
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in ACCEPTED_CHARSETS:
                raise UnsupportedMediaType(f"unsupported charset {shown(charset)}: bodies must be UTF-8")
    return kind


def identity_coding(header: str | None) -> None:
    """Refuse a body sent with a content coding (``Content-Encoding: gzip``, ...): 415
    naming it. Bodies are read as sent; ``identity`` (or no header) is the only coding."""
    if header is None:
        return
    codings = [coding.strip().lower() for coding in header.split(",") if coding.strip()]
    applied = [coding for coding in codings if coding != "identity"]
    if applied:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {shown(', '.join(applied))}: send the body uncompressed"
        )


# ----------------------------------------------------------------------------- body
def body_bytes(body: str | None, is_base64_encoded: bool, max_bytes: int) -> bytes:
    """The request body as bytes (API Gateway base64-encodes some bodies), at most
    ``max_bytes`` long (413 otherwise)."""
    if not body:
        return b""
    if is_base64_encoded:
        if len(body) > (max_bytes + 2) // 3 * 4 + 4:  # cannot decode to <= max_bytes
            padding = len(body) - len(body.rstrip("="))
            raise _too_large(len(body) * 3 // 4 - padding, max_bytes)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the body is marked base64-encoded but is not valid base64") from None
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise _too_large(len(raw), max_bytes)
    return raw


def _too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is {size} bytes; the limit is {max_bytes} (MAX_BODY_BYTES)")


def decode_utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8 (byte {exc.start})") from None
    return text.removeprefix("\ufeff")


# ----------------------------------------------------------------------------- JSON
class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def load_json(text: str) -> Any:
    if not text.strip():
        raise BadRequest("empty body: expected a JSON object or an array of objects")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        # Two values for one key are read differently by different parsers: refuse them.
        raise BadRequest(f"malformed JSON: key {shown(str(exc))} appears twice in one object") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except ValueError:  # Python's limit on the digits of an integer (4,300)
        raise BadRequest(
            f"malformed JSON: a number has more than {sys.get_int_max_str_digits()} digits"
        ) from None


def _json_records(
    text: str, tenant_header: str | None, caller: str, limits: Limits, received_at: datetime
) -> Accepted:
    document = load_json(text)
    batch = isinstance(document, list)
    records: list[Any] = document if batch else [document]
    if batch and not records:
        raise BadRequest("empty array: send at least one record")

    def where(i: int) -> str:
        # counted from 1, as lines are, and as the generated ids' suffixes (":1" is the first)
        return f"record {i + 1}: " if batch else ""

    for i, record in enumerate(records):
        if not isinstance(record, dict):
            expected = "each array element must be a JSON object" if batch else "expected a JSON object"
            raise BadRequest(f"{where(i)}{expected} with tenant_id and text, got {_json_type(record)}")
        unknown = sorted(set(record) - set(RECORD_FIELDS))
        if unknown:
            raise BadRequest(
                f"{where(i)}unknown field {shown(unknown[0])} (allowed: {', '.join(RECORD_FIELDS)})"
            )

    # Tenants first: naming another tenant is refused whatever else is wrong.
    _check_tenant(tenant_header, caller, "the X-Tenant-ID header")
    for i, record in enumerate(records):
        named = record.get("tenant_id")
        if named is not None and not isinstance(named, str):
            raise BadRequest(f"{where(i)}tenant_id must be a string, got {_json_type(named)}")
        _check_tenant(named, caller, f"{where(i)}tenant_id")
        if named == "":
            raise BadRequest(f"{where(i)}empty tenant_id (name the key's tenant, or leave the field out)")
        if named is None and not tenant_header:
            raise BadRequest(f"{where(i)}missing tenant_id (or send an X-Tenant-ID header)")
    if batch and len(records) > limits.max_batch_records:
        raise PayloadTooLarge(
            f"the array has {len(records)} records; the limit is {limits.max_batch_records} "
            "(MAX_BATCH_RECORDS): split it into several requests"
        )

    messages: list[IngestMessage] = []
    seen: set[str] = set()
    for i, record in enumerate(records):
        body = _check_text(record.get("text"), where(i), limits)
        log_id = record.get("log_id")
        if log_id is None:
            log_id = new_log_id()
        elif not is_log_id(log_id):
            got = shown(log_id) if isinstance(log_id, str) else _json_type(log_id)
            raise BadRequest(f"{where(i)}invalid log_id {got}: use {LOG_ID_RULE}")
        if log_id in seen:
            raise BadRequest(f"{where(i)}log_id {shown(log_id)} appears more than once in the request")
        seen.add(log_id)
        messages.append(_message(caller, log_id, "json", body, received_at, where(i)))
    return Accepted(tuple(messages), batch)


def _check_tenant(named: str | None, caller: str, what: str) -> None:
    if named is None or named == "":
        return
    if named != caller:
        raise Forbidden(
            f"{what} names tenant {shown(named)} but the API key belongs to tenant {caller!r}; "
            "a key can only write and read its own tenant's logs"
        )


def _check_text(value: Any, where: str, limits: Limits) -> str:
    if value is None:
        raise BadRequest(f"{where}missing text")
    if not isinstance(value, str):
        raise BadRequest(f"{where}text must be a string, got {_json_type(value)}")
    if not value.strip():
        raise BadRequest(f"{where}empty text")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"{where}text is not valid Unicode (it contains a lone surrogate escape)") from None
    if size > limits.max_text_bytes:
        raise PayloadTooLarge(f"{where}text is {size} bytes; the limit per record is {limits.max_text_bytes}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# ----------------------------------------------------------------------------- text/plain
def _text_records(
    text: str, request: HttpInput, caller: str, limits: Limits, received_at: datetime
) -> Accepted:
    tenant = request.tenant_header
    _check_tenant(tenant, caller, "the X-Tenant-ID header")
    if not tenant:
        raise BadRequest("missing X-Tenant-ID header (required with text/plain)")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise BadRequest("empty text: the body has no non-blank line")
    if len(numbered) > limits.max_batch_records:
        raise PayloadTooLarge(
            f"the body has {len(numbered)} non-blank lines; the limit is {limits.max_batch_records} "
            "(MAX_BATCH_RECORDS): split it into several requests"
        )
    base = request.log_id_header
    if base is not None and not is_log_id(base):
        raise BadRequest(f"invalid X-Log-ID header {shown(base)}: use {LOG_ID_RULE}")
    batch = len(numbered) > 1
    messages = []
    for record, (n, line) in enumerate(numbered, start=1):
        where = f"line {n}: " if batch else ""
        body = _check_text(line, where, limits)
        if base is None:
            log_id = new_log_id()
        else:
            log_id = f"{base}:{record}" if batch else base
            if not is_log_id(log_id):
                raise BadRequest(
                    f"X-Log-ID {shown(base)} is too long to number {len(numbered)} lines "
                    f"(<X-Log-ID>:<n> must be {LOG_ID_RULE})"
                )
        messages.append(_message(caller, log_id, "text", body, received_at, where))
    return Accepted(tuple(messages), batch)


def _message(
    tenant: str, log_id: str, source: Source, text: str, received_at: datetime, where: str
) -> IngestMessage:
    try:
        return IngestMessage(
            tenant_id=tenant, log_id=log_id, source=source, text=text, received_at=received_at
        )
    except ValidationError as exc:  # the checks above should make this unreachable
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"{where}invalid record ({problems})") from None
