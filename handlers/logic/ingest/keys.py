"""API keys: issued once, stored only as a SHA-256 hash, looked up by that hash.

A key is ``hr_`` followed by 43 URL-safe characters (256 random bits). Its SHA-256 is the
table's partition key, so a lookup needs no comparison of secrets at all; the stored hash
is still compared in constant time as a second check. A key that cannot be one of ours
(wrong shape) is refused without a table lookup.

A plain SHA-256, with neither salt nor a slow key-derivation function, is deliberate. Those
defend human-chosen passwords, few enough to be guessed from a leaked hash; a key is 256 bits
from ``secrets``, which no guessing reaches however fast the hash, and a hash of the key alone
is what lets the table be read by it (a salt per key would mean a scan). Should the table
leak, its hashes give nobody a key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Any

from handlers.models.ingest import iso_utc

KEY_PREFIX = "hr_"
# Every key ever issued (``generate_api_key`` since the first version): the prefix and
# token_urlsafe(32), 32 random bytes as 43 characters of unpadded base64url.
_KEY_SHAPE = re.compile(r"hr_[A-Za-z0-9_-]{43}")


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def plausible_key(key: str | None) -> bool:
    return key is not None and _KEY_SHAPE.fullmatch(key) is not None


def holds_key(text: str) -> bool:
    """Whether ``text`` has something shaped like an API key in it (a query string, say)."""
    return _KEY_SHAPE.search(text) is not None


def new_key_item(tenant_id: str, key: str, created_at: datetime, name: str | None = None) -> dict[str, Any]:
    """The TENANT_KEYS_TABLE item for a newly issued key. ``key_id`` names the key in
    listings and logs; ``key_prefix`` helps its owner recognise it. Neither reveals it."""
    return {
        "key_hash": hash_api_key(key),
        "tenant_id": tenant_id,
        "name": name or tenant_id,
        "key_id": "key_" + secrets.token_hex(6),
        "key_prefix": key[: len(KEY_PREFIX) + 4],
        "created_at": iso_utc(created_at),
        "disabled": False,
    }
