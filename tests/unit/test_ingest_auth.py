"""API keys, the lookup cache, log ids (no AWS)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid

import pytest

from handlers.logic.ingest.auth import Authenticator, misplaced_key
from handlers.logic.ingest.errors import Unauthorized
from handlers.logic.ingest.ids import is_log_id, is_tenant_id, new_log_id
from handlers.logic.ingest.keys import generate_api_key, hash_api_key, new_key_item, plausible_key
from handlers.models.ingest import StoredKey, TenantKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Table:
    """A fake key table counting lookups."""

    def __init__(self) -> None:
        self.items: dict[str, StoredKey] = {}
        self.lookups = 0

    def add(self, key: str, tenant: str, disabled: bool = False) -> None:
        digest = hash_api_key(key)
        self.items[digest] = StoredKey(key_hash=digest, key=TenantKey(tenant_id=tenant, disabled=disabled))

    def lookup(self, key_hash: str) -> StoredKey | None:
        self.lookups += 1
        return self.items.get(key_hash)


@pytest.fixture
def setup():
    table, clock = Table(), Clock()
    return table, clock, Authenticator(table.lookup, clock=clock)


def test_keys_are_random_prefixed_and_hashed_with_sha256():
    key = generate_api_key()
    assert re.fullmatch(r"hr_[A-Za-z0-9_-]{43}", key)
    assert key != generate_api_key()
    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_key_item_stores_the_hash_never_the_key():
    from datetime import UTC, datetime

    key = generate_api_key()
    item = new_key_item("acme", key, datetime(2025, 1, 1, tzinfo=UTC))
    assert key not in str(item.values())
    assert item["key_hash"] == hash_api_key(key)
    assert item["key_prefix"] == key[:7] and item["key_id"].startswith("key_")
    assert (item["tenant_id"], item["name"], item["disabled"]) == ("acme", "acme", False)
    assert item["created_at"] == "2025-01-01T00:00:00.000Z"


def test_valid_key_resolves_to_its_tenant(setup):
    table, _, auth = setup
    key = generate_api_key()
    table.add(key, "acme")
    assert auth.authenticate(key).tenant_id == "acme"


@pytest.mark.parametrize("key", [None, ""])
def test_missing_key_is_401(setup, key):
    with pytest.raises(Unauthorized, match="missing API key"):
        setup[2].authenticate(key)


@pytest.mark.parametrize(
    "key",
    [
        "short",
        "has space in it 123456",
        "é" * 20,
        "x" * 300,
        "\ud800" * 20,
        "hr_" + "a" * 42,  # one character short
        "hr_" + "a" * 44,  # one too many
        "hr_" + "a" * 42 + "+",  # standard base64, not URL-safe
        "hr_" + "a" * 42 + "=",
        "HR_" + "a" * 43,
        "hx_" + "a" * 43,
        "a" * 46,  # printable ASCII of the right length, the shape the old check accepted
        "hr_" + "a" * 43 + "\n",
    ],
)
def test_implausible_keys_are_refused_without_a_lookup(setup, key):
    table, _, auth = setup
    with pytest.raises(Unauthorized, match="invalid API key"):
        auth.authenticate(key)
    assert table.lookups == 0


@pytest.mark.parametrize("joined", ["{key},{key}", "{key},hr_" + "b" * 43, "{key}, {key}"])
def test_a_key_header_sent_twice_is_refused_saying_so(setup, joined):
    # API Gateway joins the values of a header sent twice with commas (a client library's
    # default x-api-key plus the one a request adds): the value is no key at all
    table, _, auth = setup
    key = generate_api_key()
    table.add(key, "acme")
    with pytest.raises(Unauthorized, match="x-api-key header was sent more than once") as refused:
        auth.authenticate(joined.format(key=key))
    assert key not in refused.value.message and table.lookups == 0


@pytest.mark.parametrize("joined", ["{key},", "{key}, ", ",{key}", "{key},,", " , {key} ,"])
def test_one_key_with_empty_values_beside_it_is_that_key(setup, joined):
    # A client that ends the header with a comma, or sends it again empty, which API Gateway
    # joins as "<key>,": one key, not a header sent more than once
    table, _, auth = setup
    key = generate_api_key()
    table.add(key, "acme")
    assert auth.authenticate(joined.format(key=key)).tenant_id == "acme"
    assert table.lookups == 1


@pytest.mark.parametrize("joined", [",", " , ,"])
def test_a_key_header_of_only_commas_is_a_missing_key_saying_so(setup, joined):
    table, _, auth = setup
    with pytest.raises(Unauthorized, match=r"^missing API key: the x-api-key header holds only commas"):
        auth.authenticate(joined)
    assert table.lookups == 0


@pytest.mark.parametrize(
    "query",
    [
        {"api_key": "{key}"},
        {"token": "Bearer {key}"},
        {"{key}": ""},  # ?hr_...: the key as the parameter's name
        {"x-api-key": "{key},{key}"},  # repeated, joined with a comma
    ],
)
def test_a_key_in_the_query_string_is_called_exposed(query):
    key = generate_api_key()
    found = misplaced_key({n.format(key=key): v.format(key=key) for n, v in query.items()}, None)
    assert "treat a key sent there as exposed" in found and key not in found


@pytest.mark.parametrize(
    "query", [{"key": "foo"}, {"api_key": ""}, {"x-api-key": "my key"}, {"apikey": "hr_" + "a" * 42}, {}]
)
def test_a_query_string_without_a_key_shaped_value_exposed_nothing(query):
    # ?key=foo cannot have leaked a key: the plain 401, naming where the key is read
    assert misplaced_key(query, None) == ""
    assert misplaced_key(query, "Bearer foo") == " (the Authorization header is not read)"


def test_every_issued_key_has_the_shape_that_is_looked_up(setup):
    # keys are hr_ + secrets.token_urlsafe(32) (the only generator keys.py has ever had)
    table, _, auth = setup
    for key in [generate_api_key() for _ in range(200)] + ["hr_" + "-_aZ09" * 7 + "x"]:
        assert plausible_key(key), key
        with pytest.raises(Unauthorized):
            auth.authenticate(key)
    assert table.lookups == 201


def test_unknown_and_disabled_keys_are_401(setup):
    table, _, auth = setup
    disabled = generate_api_key()
    table.add(disabled, "acme", disabled=True)
    for key in (generate_api_key(), disabled):
        with pytest.raises(Unauthorized, match="invalid API key"):
            auth.authenticate(key)


def test_hits_are_cached_for_a_minute(setup):
    # Given a verified key
    table, clock, auth = setup
    key = generate_api_key()
    table.add(key, "acme")
    auth.authenticate(key)
    # When it is used again within 60 s, the table is not read again
    clock.now += 59
    auth.authenticate(key)
    assert table.lookups == 1
    # and after 60 s it is verified again (a disabled key stops working)
    table.add(key, "acme", disabled=True)
    clock.now += 2
    with pytest.raises(Unauthorized):
        auth.authenticate(key)
    assert table.lookups == 2


def test_a_revoked_key_is_refused_after_a_minute_of_wall_time_however_long_the_function_was_frozen(
    monkeypatch,
):
    # Given a running API function (its default clock) that verified a key
    table, wall = Table(), [1_800_000_000.0]
    monkeypatch.setattr("time.time", lambda: wall[0])
    auth = Authenticator(table.lookup)
    key = generate_api_key()
    table.add(key, "acme")
    assert auth.authenticate(key).tenant_id == "acme"
    # When the key is revoked and the next request comes ten minutes later, the function
    # having been frozen meanwhile (Lambda freezes idle environments; a monotonic clock
    # need not advance while they are frozen, and here it barely does)
    table.add(key, "acme", disabled=True)
    wall[0] += 600
    # Then the key is verified again, and refused
    with pytest.raises(Unauthorized):
        auth.authenticate(key)
    assert table.lookups == 2


def test_a_clock_set_back_does_not_extend_the_trust_in_a_key(setup):
    # Given a verified key
    table, clock, auth = setup
    key = generate_api_key()
    table.add(key, "acme")
    auth.authenticate(key)
    # When the clock is set back (by far more than the minute a key is trusted)
    table.add(key, "acme", disabled=True)
    clock.now -= 3600
    # Then the key is verified again, not trusted for another hour and a minute
    with pytest.raises(Unauthorized):
        auth.authenticate(key)
    assert table.lookups == 2


def test_misses_are_cached_only_briefly(setup):
    # Given a key that failed because it was not issued yet
    table, clock, auth = setup
    key = generate_api_key()
    with pytest.raises(Unauthorized):
        auth.authenticate(key)
    table.add(key, "acme")
    # Then it works a few seconds later, not a minute later
    clock.now += 5.1
    assert auth.authenticate(key).tenant_id == "acme"


def test_a_failing_lookup_is_not_cached(setup):
    # Given a valid key and a key table that is down for the first lookup
    table, _, _ = setup
    key = generate_api_key()
    table.add(key, "acme")
    calls = []

    def flaky(key_hash: str) -> StoredKey | None:
        calls.append(key_hash)
        if len(calls) == 1:
            raise ConnectionError("table down")
        return table.lookup(key_hash)

    auth = Authenticator(flaky)
    with pytest.raises(ConnectionError):
        auth.authenticate(key)
    # Then the failure is not remembered: the next request is verified and succeeds
    assert auth.authenticate(key).tenant_id == "acme"
    assert len(calls) == 2


def test_both_caches_are_bounded(setup):
    table, _, _ = setup
    auth = Authenticator(table.lookup, max_entries=3, max_misses=4)
    keys = [generate_api_key() for _ in range(10)]
    for key in keys[:5]:
        table.add(key, "acme")
    for key in keys:
        with contextlib.suppress(Unauthorized):
            auth.authenticate(key)
    assert (len(auth._hits), len(auth._misses)) == (3, 4)


def test_a_flood_of_wrong_keys_does_not_push_out_verified_ones(setup):
    # Given a busy client whose key is verified and cached
    table, clock, _ = setup
    auth = Authenticator(table.lookup, clock=clock)
    key = generate_api_key()
    table.add(key, "acme")
    auth.authenticate(key)
    # When more wrong keys than the cache holds arrive (a scan, a misconfigured client)
    for _ in range(2000):
        with pytest.raises(Unauthorized):
            auth.authenticate(generate_api_key())
    assert table.lookups == 2001
    # Then the client's next request, within the minute, is still served from the cache
    clock.now += 30
    assert auth.authenticate(key).tenant_id == "acme"
    assert table.lookups == 2001


def test_a_wrong_key_repeated_costs_one_lookup_per_miss_period(setup):
    table, clock, auth = setup
    wrong = generate_api_key()
    for _ in range(50):
        with pytest.raises(Unauthorized):
            auth.authenticate(wrong)
    assert table.lookups == 1
    clock.now += 5.1
    with pytest.raises(Unauthorized):
        auth.authenticate(wrong)
    assert table.lookups == 2


def test_a_disabled_key_stops_being_trusted_when_its_minute_is_over(setup):
    table, clock, auth = setup
    key = generate_api_key()
    table.add(key, "acme")
    auth.authenticate(key)
    table.add(key, "acme", disabled=True)
    clock.now += 61
    with pytest.raises(Unauthorized):
        auth.authenticate(key)
    # and its refusal is remembered like any other, without the old verification
    with pytest.raises(Unauthorized):
        auth.authenticate(key)
    assert table.lookups == 2


def test_a_lookup_returning_another_hash_is_refused():
    # defence in depth: the stored hash must equal the presented key's hash
    key = generate_api_key()
    auth = Authenticator(lambda _h: StoredKey(key_hash="0" * 64, key=TenantKey(tenant_id="acme")))
    with pytest.raises(Unauthorized):
        auth.authenticate(key)


def test_generated_log_ids_are_valid_uuid7_sorted_by_time():
    ids = [new_log_id(now_ms=ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 and is_log_id(i) for i in ids)
    assert new_log_id() != new_log_id()


def test_log_ids_made_in_one_millisecond_keep_their_order():
    # the records of one request get their ids within a millisecond or two
    ids = [new_log_id(now_ms=1_700_000_000_000) for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("acme", True),
        ("a", True),
        ("team-1_x", True),
        ("Acme", False),
        ("-acme", False),
        ("a" * 64, False),
        ("", False),
    ],
)
def test_tenant_ids(value, ok):
    assert is_tenant_id(value) is ok
