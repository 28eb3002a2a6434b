"""Authentication: ``x-api-key`` -> the tenant it belongs to, cached per execution environment.

A key that does not have the shape of an issued key (``hr_`` and 43 URL-safe characters)
is refused without a table read. A verified key is cached for ``hit_seconds`` (60 by
default), so a busy client costs one table read a minute; disabling a key therefore takes
effect within that time. A failed lookup is cached only for ``miss_seconds`` (5), so a key
issued a moment after a failed attempt works almost at once, while a wrong key sent again
and again costs one table read per 5 s. Failed lookups are cached apart from verified keys,
so a flood of wrong keys can only push out other wrong keys, never a verified one. Both
caches are keyed by the key's hash and bounded in size; a flood of distinct well-shaped
wrong keys costs a table read each, as many as the API's throttle lets through.

Both times are wall-clock time (``time.time``), not ``time.monotonic``: Lambda freezes an
idle execution environment between requests, and a monotonic clock need not advance while
it is frozen, which would let a warm function trust a revoked key long after the minute.
An entry stamped in the future (the clock was set back) is stale, not trusted for longer.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TypeVar

from handlers.models.ingest import StoredKey, TenantKey

from .errors import Unauthorized
from .keys import hash_api_key, holds_key, plausible_key

Lookup = Callable[[str], StoredKey | None]
V = TypeVar("V")
HIT_SECONDS = 60.0  # how long a verified key is trusted without a table read
MISS_SECONDS = 5.0


def _wall_clock() -> float:
    return time.time()


def misplaced_key(query: Mapping[str, str], authorization: str | None) -> str:
    """Where a request without an x-api-key header may have put its key, said in the 401:
    a key in the query string is never read and has leaked (URLs are kept in the logs of
    proxies and browsers along the way), so its owner should replace it. Only a name or
    value with a key's shape is one: ``?key=foo`` exposed nothing, and gets the plain 401."""
    if any(holds_key(name) or holds_key(value) for name, value in query.items()):
        return (
            ". A key in the query string is never read, and URLs are kept in logs along the way "
            "(proxies, browser history): treat a key sent there as exposed, revoke it and use a new one"
        )
    if authorization:
        return " (the Authorization header is not read)"
    return ""


def _one_value(header: str) -> str | None:
    """The one value of an x-api-key header as API Gateway hands it over (the values of a
    header sent more than once joined with commas), or None when it holds several. Empty
    values are no key: ``<key>,`` (an empty repeat, or a client that ends the list with a
    comma) is that key; only commas is no key at all."""
    values = [value.strip(" \t") for value in header.split(",")]
    given = [value for value in values if value]
    return None if len(given) > 1 else given[0] if given else ""


class Authenticator:
    def __init__(
        self,
        lookup: Lookup,
        *,
        hit_seconds: float = HIT_SECONDS,
        miss_seconds: float = MISS_SECONDS,
        max_entries: int = 1024,
        max_misses: int = 1024,
        clock: Callable[[], float] = _wall_clock,
    ):
        self._lookup = lookup
        self._hit_seconds = hit_seconds
        self._miss_seconds = miss_seconds
        self._max_entries = max_entries
        self._max_misses = max_misses
        self._clock = clock
        # key hash -> (verified at, tenant); least recently used first
        self._hits: OrderedDict[str, tuple[float, TenantKey]] = OrderedDict()
        # key hash -> refused at; oldest first
        self._misses: OrderedDict[str, float] = OrderedDict()

    def authenticate(self, api_key: str | None, misplaced: str = "") -> TenantKey:
        """The tenant of a valid, enabled key; ``Unauthorized`` (401) otherwise. ``misplaced``
        (``misplaced_key``) ends the message when the header is missing."""
        if api_key is None or api_key == "":
            raise Unauthorized("missing API key: send your tenant's key in the x-api-key header" + misplaced)
        if "," in api_key:  # API Gateway joins a header's repeated values with commas
            one = _one_value(api_key)
            if one is None:
                raise Unauthorized(
                    "invalid API key: the x-api-key header was sent more than once; send exactly one key"
                )
            if not one:
                raise Unauthorized(
                    "missing API key: the x-api-key header holds only commas; send your tenant's key in it"
                )
            api_key = one
        if not plausible_key(api_key):
            raise Unauthorized("invalid API key")
        key_hash = hash_api_key(api_key)
        now = self._clock()
        hit = self._hits.get(key_hash)
        if hit is not None and self._fresh(hit[0], now, self._hit_seconds):
            self._hits.move_to_end(key_hash)
            return hit[1]
        refused_at = self._misses.get(key_hash)
        if refused_at is not None and self._fresh(refused_at, now, self._miss_seconds):
            raise Unauthorized("invalid API key")
        tenant = self._verify(key_hash)
        if tenant is None:
            self._hits.pop(key_hash, None)
            self._remember(self._misses, key_hash, now, self._max_misses)
            raise Unauthorized("invalid API key")
        self._misses.pop(key_hash, None)
        self._remember(self._hits, key_hash, (now, tenant), self._max_entries)
        return tenant

    @staticmethod
    def _fresh(stamped_at: float, now: float, seconds: float) -> bool:
        """Whether an entry stamped at ``stamped_at`` still holds: less than ``seconds``
        ago, and not in the future (a clock set back must not stretch it)."""
        return 0 <= now - stamped_at < seconds

    def _verify(self, key_hash: str) -> TenantKey | None:
        stored = self._lookup(key_hash)  # may raise: the caller answers 503, nothing is cached
        if stored is None or not hmac.compare_digest(stored.key_hash, key_hash):
            return None
        return None if stored.key.disabled else stored.key

    @staticmethod
    def _remember(cache: OrderedDict[str, V], key_hash: str, value: V, bound: int) -> None:
        cache[key_hash] = value
        cache.move_to_end(key_hash)
        while len(cache) > bound:
            cache.popitem(last=False)

    def forget(self) -> None:
        self._hits.clear()
        self._misses.clear()
