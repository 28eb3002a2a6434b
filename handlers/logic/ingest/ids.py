"""Log ids: validated when the client supplies them, time-ordered when generated."""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid

from handlers.models.ingest import LOG_ID_PATTERN, TENANT_ID_PATTERN

_LOG_ID = re.compile(LOG_ID_PATTERN)
_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def is_log_id(value: object) -> bool:
    return isinstance(value, str) and _LOG_ID.fullmatch(value) is not None


def is_tenant_id(value: object) -> bool:
    return isinstance(value, str) and _TENANT_ID.fullmatch(value) is not None


class _Uuid7:
    """UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 42-bit counter (``rand_a``
    and the top 30 bits of ``rand_b``; section 6.2, method 1) and 32 random bits. The
    counter starts at a random value with its top bit clear in each new millisecond and
    counts up within it, so ids one process makes sort in the order it made them."""

    COUNTER_BITS = 42

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = -1
        self._counter = 0

    def __call__(self, ms: int) -> str:
        with self._lock:
            if ms == self._ms:
                self._counter += 1
            else:
                self._ms, self._counter = ms, secrets.randbits(self.COUNTER_BITS - 1)
            counter = self._counter
        value = (ms & 0xFFFF_FFFF_FFFF) << 80
        value |= 0x7 << 76  # version
        value |= (counter >> 30) << 64  # rand_a: the counter's top 12 bits
        value |= 0b10 << 62  # variant
        value |= (counter & (1 << 30) - 1) << 32
        value |= secrets.randbits(32)
        return str(uuid.UUID(int=value))


_uuid7 = _Uuid7()


def new_log_id(now_ms: int | None = None) -> str:
    """A UUIDv7. Generated ids sort by arrival time (and, within one request, in the
    request's order), so ``GET /logs`` pages through them in the order they came in."""
    return _uuid7(int(time.time() * 1000) if now_ms is None else now_ms)
