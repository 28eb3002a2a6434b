"""``headrace tenants``: the ingest API's tenants and their API keys, on any stack.

The stack is found through its outputs file (``--outputs``, default the embedded
runtime's ``.headrace/local/outputs.json``); keys live in the table named by its
``tenant_keys_table`` output. Only a key's SHA-256 is stored: ``add`` prints the key once,
as the last line of its output, so scripts can take it with ``| tail -n 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.logic.ingest.auth import HIT_SECONDS
from handlers.logic.ingest.ids import is_tenant_id
from handlers.logic.ingest.keys import generate_api_key, new_key_item
from handlers.models.ingest import iso_utc
from headrace.outputs import OutputsError, StackOutputs, add_outputs_option

TENANT_RULE = "1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"


class _Failure(Exception):
    pass


def register(subparsers: Any) -> None:
    """Add ``tenants add|list|revoke`` to the ``headrace`` command line."""
    parser = subparsers.add_parser("tenants", help="issue, list and revoke ingest API keys")
    actions = parser.add_subparsers(dest="tenants_action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="issue an API key for tenant NAME (printed once, as the last line)",
        description="Issue a new API key for tenant NAME (a tenant may hold several keys, e.g. "
        "while rotating). The key is printed once, as the last line; only its hash is stored.",
    )
    add.add_argument("name", metavar="NAME", help=f"the tenant id ({TENANT_RULE})")
    add_outputs_option(add)
    add.set_defaults(func=_add)

    listing = actions.add_parser("list", help="list tenants and their keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    add_outputs_option(listing)
    listing.set_defaults(func=_list)

    revoke = actions.add_parser(
        "revoke", help="disable a key by its key id (see 'list'); the API refuses it within a minute"
    )
    revoke.add_argument("key_id", metavar="KEY_ID")
    add_outputs_option(revoke)
    revoke.set_defaults(func=_revoke)


# ------------------------------------------------------------------------------ commands
def _add(args: argparse.Namespace) -> int:
    name: str = args.name
    if not is_tenant_id(name):
        return _fail(f"invalid tenant name {name!r}: use {TENANT_RULE}")

    def run(keys: Any, table_name: str) -> int:
        key = generate_api_key()
        item = new_key_item(name, key, datetime.now(UTC))
        keys.put_item(Item=item, ConditionExpression="attribute_not_exists(key_hash)")
        print(
            f"Issued API key {item['key_id']} ({item['key_prefix']}...) for tenant {name!r} in "
            f"{table_name}. Send it in the x-api-key header. It is shown only this once:"
        )
        print(key)
        return 0

    return _with_table(args.outputs, run)


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
    key_id: str = args.key_id

    def run(keys: Any, table_name: str) -> int:
        matches = [i for i in _scan(keys, with_hash=True) if i.get("key_id") == key_id]
        if not matches:
            raise _Failure(f"no key {key_id!r} in {table_name} (see 'headrace tenants list')")
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


# ------------------------------------------------------------------------------ mechanics
def _with_table(outputs_path: Path, run: Any) -> int:
    try:
        outputs = StackOutputs.load(outputs_path)
        table_name = str(outputs.get("tenant_keys_table"))
        return int(run(outputs.resource("dynamodb").Table(table_name), table_name))
    except (OutputsError, _Failure) as exc:
        return _fail(str(exc))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            return _fail(f"the tenant keys table does not exist on this stack ({outputs_path})")
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


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2
