"""Log ids: validated when the client supplies them, time-ordered when generated."""

from __future__ import annotations

import re
import secrets
import time
import uuid

from handlers.models.ingest import LOG_ID_PATTERN, TENANT_ID_PATTERN

_LOG_ID = re.compile(LOG_ID_PATTERN)
_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def is_log_id(value: object) -> bool:
    return isinstance(value, str) and _LOG_ID.fullmatch(value) is not None


def is_tenant_id(value: object) -> bool:
    return isinstance(value, str) and _TENANT_ID.fullmatch(value) is not None


def new_log_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Generated ids
    sort by arrival time, so ``GET /logs`` pages through them in the order they came in."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= secrets.randbits(12) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= secrets.randbits(62)  # rand_b
    return str(uuid.UUID(int=value))
