"""``headrace tenants``: the ingest API's tenants and their API keys, on any stack.

The stack is found through its outputs file (``--outputs``, default the embedded
runtime's ``.headrace/local/outputs.json``); keys live in the table named by its
``tenant_keys_table`` output. Only a key's SHA-256 is stored: ``add`` prints the key once,
as the last line of its output, so scripts can take it with ``| tail -n 1``.

Offboarding: ``revoke --tenant NAME`` disables all of a tenant's keys; ``purge NAME`` deletes
its stored records from the ``tenant_logs_table`` (a Query on the tenant's partition, never a
Scan), as a dry run unless ``--execute`` is given. An offboarded tenant's name stays bound
to whatever is still stored under it: ``add`` refuses a tenant whose keys are all revoked
unless ``--reactivate`` says it is the same customer again.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.logic.ingest.auth import HIT_SECONDS
from handlers.logic.ingest.ids import is_tenant_id
from handlers.logic.ingest.keys import KEY_PREFIX, generate_api_key, hash_api_key, new_key_item, plausible_key
from handlers.models.ingest import iso_utc
from headrace.outputs import OutputsError, StackOutputs, add_outputs_option

TENANT_RULE = "1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"


# BatchWriteItem takes at most 25 requests; a purge reads the partition a page at a time
BATCH_SIZE = 25
PURGE_PAGE = 1000
# attempts of one batch's unprocessed items (throttling) before giving up: re-run to finish
BATCH_ATTEMPTS = 8
QUEUED_NOTE = (
    "Records of {tenant!r} still in the ingest queue (accepted before its keys were revoked, or up to "
    f"{HIT_SECONDS:.0f} seconds after, while running API functions trust a cached key) may still be "
    "stored after this purge: run it again once the queue has drained. Its messages in the ingest DLQ "
    "(unredacted) are not deleted, and a redrive of that DLQ stores them: see "
    "'headrace dlq inspect --queue ingest --prefix {tenant}/'."
)


class _Failure(Exception):
    pass


def register(subparsers: Any) -> None:
    """Add ``tenants add|list|revoke|purge`` to the ``headrace`` command line."""
    parser = subparsers.add_parser(
        "tenants", help="issue, list and revoke ingest API keys; offboard a tenant (revoke --tenant, purge)"
    )
    actions = parser.add_subparsers(dest="tenants_action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="issue an API key for tenant NAME (printed once, as the last line)",
        description="Issue a new API key for tenant NAME (a tenant may hold several keys, e.g. "
        "while rotating). The key is printed once, as the last line; only its hash is stored. "
        "A tenant whose keys are all revoked (offboarded) is refused unless --reactivate is given: "
        "a new key reads every record still stored under its name.",
    )
    add.add_argument("name", metavar="NAME", help=f"the tenant id ({TENANT_RULE})")
    add.add_argument(
        "--reactivate",
        action="store_true",
        help="issue a key for a tenant whose keys are all revoked (the same customer, back again)",
    )
    add_outputs_option(add)
    add.set_defaults(func=_add)

    listing = actions.add_parser("list", help="list tenants and their keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    add_outputs_option(listing)
    listing.set_defaults(func=_list)

    revoke = actions.add_parser(
        "revoke",
        help="disable a key by its key id (see 'list') or by the key itself, or every key of a tenant "
        "with --tenant NAME; the API refuses it within a minute",
        usage="%(prog)s (KEY_ID | API_KEY | - | --tenant NAME) [--outputs PATH]",
    )
    revoke.add_argument(
        "key_id",
        metavar="KEY_ID",
        nargs="?",
        help="the key id to disable, or the (leaked) key itself; - reads it from standard input "
        "(asked for without echo on a terminal), so the key is not in the process list or the "
        "shell's history",
    )
    revoke.add_argument("--tenant", metavar="NAME", help="disable every active key of tenant NAME")
    add_outputs_option(revoke)
    revoke.set_defaults(func=_revoke)

    purge = actions.add_parser(
        "purge",
        help="delete every stored record of tenant NAME (dry run unless --execute)",
        description="Delete every record of tenant NAME from the tenant logs table (a Query on its "
        "partition; other tenants are never read). Without --execute, only counts them. Refuses a "
        "tenant that still has an active key unless --revoke-keys is given. Records still in the "
        "ingest queue may be stored after a purge: run it again once the queue has drained.",
    )
    purge.add_argument("name", metavar="NAME", help="the tenant id")
    purge.add_argument("--execute", action="store_true", help="delete (default: count what would be deleted)")
    purge.add_argument(
        "--revoke-keys",
        action="store_true",
        help="revoke the tenant's active keys first (otherwise a tenant with an active key is refused)",
    )
    add_outputs_option(purge)
    purge.set_defaults(func=_purge)


# ------------------------------------------------------------------------------ commands
def _add(args: argparse.Namespace) -> int:
    name: str = args.name
    if not is_tenant_id(name):
        return _fail(f"invalid tenant name {name!r}: use {TENANT_RULE}")

    def run(keys: Any, table_name: str) -> int:
        if not args.reactivate:
            _refuse_offboarded(keys, name)
        key = generate_api_key()
        item = new_key_item(name, key, datetime.now(UTC))
        try:
            keys.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(key_hash)",
                # the refusal carries the item found: no GetItem, which the operator's
                # least-privilege policy does not grant (docs/operations.md)
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            # The SDK retries a write whose answer was lost (a timeout): the retry then finds
            # the item the first attempt stored. The key is random, so that item is ours;
            # failing here would leave an active key nobody was shown.
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            stored = exc.response.get("Item") or {}  # DynamoDB's typed form: {"S": "..."}
            if stored.get("key_id") != {"S": item["key_id"]}:
                raise
        print(
            f"Issued API key {item['key_id']} ({item['key_prefix']}...) for tenant {name!r} in "
            f"{table_name}. Send it in the x-api-key header. It is shown only this once:"
        )
        print(key)
        return 0

    return _with_table(args.outputs, run)


def _refuse_offboarded(keys: Any, name: str) -> None:
    """Refuse a key for a tenant whose keys are all revoked. A tenant id is the partition of
    its records: a key issued for an offboarded tenant's name reads whatever is stored under
    it (records still queued at the purge, a redrive of the ingest DLQ, or every record when
    it was revoked but not purged), so a new customer given an old name would read them."""
    held = _tenant_keys(keys, name)
    if not held or not all(item.get("disabled") for item in held):
        return
    last = max(str(item.get("disabled_at", "?")) for item in held)
    raise _Failure(
        f"tenant {name!r} is offboarded: {'its key was' if len(held) == 1 else f'all {len(held)} keys were'} "
        f"revoked (the last at {last}), and a new key would read every record still stored as {name!r}. "
        "Give a new customer a name of its own; to issue a key to the same customer again, add --reactivate"
    )


def _list(args: argparse.Namespace) -> int:
    def run(keys: Any, table_name: str) -> int:
        items = sorted(_scan(keys), key=lambda i: (str(i.get("tenant_id")), str(i.get("created_at"))))
        rows = [
            {
                "tenant_id": str(i.get("tenant_id", "")),
                "key_id": str(i.get("key_id", "")),
                "key_prefix": str(i.get("key_prefix", "")),
                "created_at": str(i.get("created_at", "")),
                "status": "disabled" if i.get("disabled") else "active",
            }
            for i in items
        ]
        if args.json:
            json.dump(rows, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        if not rows:
            print(f"No API keys in {table_name}: issue one with 'headrace tenants add NAME'.")
            return 0
        headers = {
            "tenant_id": "TENANT",
            "key_id": "KEY ID",
            "key_prefix": "PREFIX",
            "created_at": "CREATED",
            "status": "STATUS",
        }
        widths = {c: max(len(headers[c]), *(len(r[c]) for r in rows)) for c in headers}
        print("  ".join(headers[c].ljust(widths[c]) for c in headers).rstrip())
        for row in rows:
            print("  ".join(row[c].ljust(widths[c]) for c in headers).rstrip())
        return 0

    return _with_table(args.outputs, run)


def _revoke(args: argparse.Namespace) -> int:
    if args.tenant is not None:
        if args.key_id is not None:
            return _fail(f"give a KEY_ID or --tenant NAME, not both (got {_shown(args.key_id)} and --tenant)")
        return _revoke_tenant(args.tenant, args.outputs)
    if args.key_id is None:
        return _fail("give the KEY_ID to revoke (see 'headrace tenants list'), or --tenant NAME")
    if args.key_id == "-":
        try:
            args.key_id = _read_key()
        except _Failure as exc:
            return _fail(str(exc))
    # A leaked key is revoked by the key itself (found by its hash): whoever has it rarely
    # knows its key id. The key is a secret: no output or error ever repeats it, nor a
    # damaged copy of it (cut short, or pasted with a space: ``_shown``).
    given: str = args.key_id.strip()
    by_key = plausible_key(given)

    def run(keys: Any, table_name: str) -> int:
        if by_key:
            digest = hash_api_key(given)
            matches = [i for i in _scan(keys, with_hash=True) if i.get("key_hash") == digest]
            if not matches:
                raise _Failure(
                    f"no key in {table_name} has the API key given: it was not issued on this stack"
                )
        else:
            matches = [i for i in _scan(keys, with_hash=True) if i.get("key_id") == given]
            if not matches:
                raise _Failure(f"no key {_shown(given)} in {table_name} (see 'headrace tenants list')")
        key_id = str(matches[0].get("key_id"))
        tenant = matches[0].get("tenant_id")
        if all(item.get("disabled") for item in matches):
            print(
                f"{key_id} of tenant {tenant!r} was already revoked (at {matches[0].get('disabled_at', '?')})."
            )
            return 0
        for item in matches:
            keys.update_item(
                Key={"key_hash": item["key_hash"]},
                UpdateExpression="SET disabled = :t, disabled_at = :now",
                ConditionExpression="attribute_exists(key_hash)",
                ExpressionAttributeValues={
                    ":t": True,
                    ":now": iso_utc(datetime.now(UTC)),
                },
            )
        print(
            f"Revoked {key_id} of tenant {tenant!r}. The API refuses it within {HIT_SECONDS:.0f} seconds "
            "(running functions cache verified keys that long)."
        )
        return 0

    return _with_table(args.outputs, run)


def _read_key() -> str:
    """``revoke -``: the key id or key from standard input — typed at a prompt that does
    not echo it on a terminal, else the input's one non-blank line (``pass show key |``,
    ``< file``) — rather than in the arguments, which the process list and the shell's
    history show to others."""
    if sys.stdin is None:
        raise _Failure("revoke -: there is no standard input to read the key from")
    if sys.stdin.isatty():
        text = getpass.getpass("API key or key id to revoke (not echoed): ")
    else:
        text = sys.stdin.read(64 * 1024)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        what = "nothing" if not lines else f"{len(lines)} lines"
        raise _Failure(
            f"revoke -: standard input holds {what}; give one key id or API key, on a line of its own"
        )
    return lines[0]


def _shown(given: str) -> str:
    """``given`` as an error may repeat it: not at all when it is an API key, whole or not."""
    if given.strip().startswith(KEY_PREFIX):
        return "an API key" if plausible_key(given.strip()) else "(a damaged API key, not repeated)"
    return repr(given)


def _revoke_tenant(name: str, outputs_path: Path) -> int:
    if not is_tenant_id(name):
        return _fail(f"invalid tenant name {name!r}: use {TENANT_RULE}")

    def run(keys: Any, table_name: str) -> int:
        items = _tenant_keys(keys, name)
        if not items:
            raise _Failure(
                f"no tenant {name!r} in {table_name}: it has no API keys (see 'headrace tenants list')"
            )
        revoked = _disable(keys, items)
        already = len(items) - len(revoked)
        if not revoked:
            was = "its key was" if already == 1 else f"all {already} keys were"
            print(f"Tenant {name!r} has no active key: {was} already revoked.")
            return 0
        print(
            f"Revoked {_plural(len(revoked), 'key')} of tenant {name!r} ({', '.join(revoked)})"
            + (f"; {already} already revoked" if already else "")
            + f". The API refuses them within {HIT_SECONDS:.0f} seconds "
            "(running functions cache verified keys that long)."
        )
        return 0

    return _with_table(outputs_path, run)


def _purge(args: argparse.Namespace) -> int:
    name: str = args.name
    if not is_tenant_id(name):
        return _fail(f"invalid tenant name {name!r}: use {TENANT_RULE}")

    def run(keys: Any, table_name: str, logs: Any, logs_name: str) -> int:
        key_items = _tenant_keys(keys, name)
        active = [i for i in key_items if not i.get("disabled")]
        stored = _count(logs, name)
        if not key_items and not stored:
            raise _Failure(
                f"no tenant {name!r}: no API keys in {table_name} and no records in {logs_name} "
                "(see 'headrace tenants list')"
            )
        if active and not args.revoke_keys:
            raise _Failure(
                f"tenant {name!r} still has {_plural(len(active), 'active key')} "
                f"({', '.join(str(i.get('key_id')) for i in active)}): new records could arrive "
                f"mid-purge. Revoke them first ('headrace tenants revoke --tenant {name}'), or add --revoke-keys"
            )
        if not args.execute:
            print(
                f"Dry run: would delete {_plural(stored, 'record')} of tenant {name!r} from {logs_name}"
                + (f", after revoking {_plural(len(active), 'active key')}" if active else "")
                + ". Add --execute to delete."
            )
            return 0
        if active:
            revoked = _disable(keys, active)
            print(f"Revoked {_plural(len(revoked), 'key')} of tenant {name!r} ({', '.join(revoked)}).")
        deleted = _delete_partition(logs, logs_name, name)
        print(f"Deleted {_plural(deleted, 'record')} of tenant {name!r} from {logs_name}.")
        print(QUEUED_NOTE.format(tenant=name))
        return 0

    return _with_table(args.outputs, run, with_logs=True)


# ------------------------------------------------------------------------------ mechanics
def _with_table(outputs_path: Path, run: Any, *, with_logs: bool = False) -> int:
    try:
        outputs = StackOutputs.load(outputs_path)
        table_name = str(outputs.get("tenant_keys_table"))
        resource = outputs.resource("dynamodb")
        if not with_logs:
            return int(run(resource.Table(table_name), table_name))
        logs_name = str(outputs.get("tenant_logs_table"))
        return int(run(resource.Table(table_name), table_name, resource.Table(logs_name), logs_name))
    except (OutputsError, _Failure) as exc:
        return _fail(str(exc))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            which = "logs" if exc.operation_name in ("Query", "BatchWriteItem") else "keys"
            return _fail(f"the tenant {which} table does not exist on this stack ({outputs_path})")
        return _fail(f"{error.get('Code')}: {error.get('Message')}")
    except BotoCoreError as exc:
        return _fail(f"cannot reach the stack: {exc}")


def _scan(keys: Any, with_hash: bool = False) -> list[dict[str, Any]]:
    fields = ["tenant_id", "key_id", "key_prefix", "created_at", "disabled", "disabled_at"] + (
        ["key_hash"] if with_hash else []
    )
    kwargs: dict[str, Any] = {
        "ProjectionExpression": ", ".join(f"#f{i}" for i in range(len(fields))),
        "ExpressionAttributeNames": {f"#f{i}": f for i, f in enumerate(fields)},
    }
    items: list[dict[str, Any]] = []
    while True:
        response = keys.scan(**kwargs)
        items.extend(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _tenant_keys(keys: Any, name: str) -> list[dict[str, Any]]:
    return sorted(
        (i for i in _scan(keys, with_hash=True) if i.get("tenant_id") == name),
        key=lambda i: str(i.get("created_at")),
    )


def _disable(keys: Any, items: list[dict[str, Any]]) -> list[str]:
    """Disable the active keys among ``items``; the key ids disabled now. A key already
    disabled keeps its first revocation time (also when revoked meanwhile by someone else)."""
    revoked: list[str] = []
    for item in items:
        if item.get("disabled"):
            continue
        try:
            keys.update_item(
                Key={"key_hash": item["key_hash"]},
                UpdateExpression="SET disabled = :t, disabled_at = :now",
                ConditionExpression="attribute_exists(key_hash) AND (attribute_not_exists(disabled) OR disabled <> :t)",
                ExpressionAttributeValues={":t": True, ":now": iso_utc(datetime.now(UTC))},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            continue  # revoked (or deleted) since it was read
        revoked.append(str(item.get("key_id")))
    return revoked


def _query_pages(logs: Any, tenant: str, **extra: Any) -> Any:
    """Every page of a Query on ``tenant``'s partition (only ever that tenant's items)."""
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "tenant_id = :t",
        "ExpressionAttributeValues": {":t": tenant},
        "ConsistentRead": True,
        **extra,
    }
    while True:
        response = logs.query(**kwargs)
        yield response
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _count(logs: Any, tenant: str) -> int:
    return sum(int(page.get("Count", 0)) for page in _query_pages(logs, tenant, Select="COUNT"))


def _delete_partition(logs: Any, logs_name: str, tenant: str) -> int:
    """Delete every item of ``tenant``'s partition; how many were deleted. Deleting an item
    that is gone already succeeds, so an interrupted purge is finished by running it again."""
    deleted = 0
    pages = _query_pages(logs, tenant, ProjectionExpression="tenant_id, log_id", Limit=PURGE_PAGE)
    try:
        for page in pages:
            item_keys = [{"tenant_id": i["tenant_id"], "log_id": i["log_id"]} for i in page.get("Items", [])]
            for start in range(0, len(item_keys), BATCH_SIZE):
                deleted += _delete_batch(logs, logs_name, item_keys[start : start + BATCH_SIZE], deleted)
    except (BotoCoreError, ClientError) as exc:
        # half done: say how far, as for the throttled batch (_delete_batch)
        raise _Failure(
            f"the purge of {tenant!r} stopped ({exc}); {_plural(deleted, 'record')} of it were deleted "
            f"from {logs_name} so far: run the purge again to finish"
        ) from exc
    except KeyboardInterrupt:
        print(
            f"headrace: the purge of {tenant!r} was interrupted; {_plural(deleted, 'record')} of it were "
            f"deleted from {logs_name} so far: run the purge again to finish",
            file=sys.stderr,
        )
        raise
    return deleted


def _delete_batch(logs: Any, logs_name: str, item_keys: list[dict[str, Any]], done: int) -> int:
    requests: list[dict[str, Any]] = [{"DeleteRequest": {"Key": key}} for key in item_keys]
    for attempt in range(BATCH_ATTEMPTS):
        if attempt:
            time.sleep(min(0.05 * 2**attempt, 2.0))  # throttled: back off, as the SDKs do
        response = logs.meta.client.batch_write_item(RequestItems={logs_name: requests})
        requests = response.get("UnprocessedItems", {}).get(logs_name, [])
        if not requests:
            return len(item_keys)
    left = len(requests)
    raise _Failure(
        f"{logs_name} kept refusing {_plural(left, 'delete')} (throttled {BATCH_ATTEMPTS} times); "
        f"{done + len(item_keys) - left} records were deleted so far: run the purge again to finish"
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2
