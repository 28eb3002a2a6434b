"""Authentication: ``x-api-key`` -> the tenant it belongs to, cached per execution environment.

A verified key is cached for ``hit_seconds`` (60 by default), so a busy client costs one
table read a minute; disabling a key therefore takes effect within that time. A miss is
cached only for ``miss_seconds`` (5), so a key issued a moment after a failed attempt works
almost at once, while a flood of wrong keys still cannot hammer the table. The cache is
keyed by the key's hash and bounded in size.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

from handlers.models.ingest import StoredKey, TenantKey

from .errors import Unauthorized
from .keys import hash_api_key, plausible_key

Lookup = Callable[[str], StoredKey | None]
HIT_SECONDS = 60.0  # how long a verified key is trusted without a table read
MISS_SECONDS = 5.0


class Authenticator:
    def __init__(
        self,
        lookup: Lookup,
        *,
        hit_seconds: float = HIT_SECONDS,
        miss_seconds: float = MISS_SECONDS,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._lookup = lookup
        self._hit_seconds = hit_seconds
        self._miss_seconds = miss_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TenantKey | None]] = OrderedDict()

    def authenticate(self, api_key: str | None) -> TenantKey:
        """The tenant of a valid, enabled key; ``Unauthorized`` (401) otherwise."""
        if api_key is None or api_key == "":
            raise Unauthorized("missing API key: send your tenant's key in the x-api-key header")
        if not plausible_key(api_key):
            raise Unauthorized("invalid API key")
        key_hash = hash_api_key(api_key)
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            tenant = cached[1]
        else:
            tenant = self._verify(key_hash)
            self._remember(key_hash, tenant, now)
        if tenant is None:
            raise Unauthorized("invalid API key")
        return tenant

    def _verify(self, key_hash: str) -> TenantKey | None:
        stored = self._lookup(key_hash)  # may raise: the caller answers 503, nothing is cached
        if stored is None or not hmac.compare_digest(stored.key_hash, key_hash):
            return None
        return None if stored.key.disabled else stored.key

    def _remember(self, key_hash: str, tenant: TenantKey | None, now: float) -> None:
        ttl = self._hit_seconds if tenant is not None else self._miss_seconds
        self._cache[key_hash] = (now + ttl, tenant)
        self._cache.move_to_end(key_hash)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def forget(self) -> None:
        self._cache.clear()
