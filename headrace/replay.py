"""``headrace replay KEY...``: process raw objects again by announcing them once more.

For each key, the object's current version (HeadObject) is announced to the processing
queue with the same EventBridge "Object Created" event S3 sends (marked with a
``replay-name``). That is safe by construction: the processor's work is keyed on bucket +
key + version id (its idempotency key), so

- a version that failed, or whose message was lost or expired, is processed again;
- a version that completed within the idempotency window
  (``metadata.idempotency_ttl_seconds``, a day by default) is acknowledged without work,
  unless ``--force`` first deletes its idempotency record (then it is processed again:
  same Parquet and summary keys, overwritten; the warehouse replaces the key's rows);
- a version that is no longer current is skipped as superseded (the latest version of a
  key wins), which is why only the current version is replayed; one that is current again
  after a newer version was deleted by its version id stays superseded, and is refused.

``--version V`` replays only if V is still the key's current version (a guard against an
upload in between). ``--dry-run`` prints what would be sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.dal.metadata import iso
from handlers.dal.s3 import error_code
from handlers.logic.idempotency import processor_idempotency_key
from handlers.logic.layout import has_raw_suffix, hidden_part
from handlers.logic.printable import printable
from handlers.logic.processing.formats import extension, readable_by_name
from handlers.models.events import ObjectRef
from headrace.outputs import DocstringHelp, OutputsError, StackOutputs, add_outputs_option, naming

REPLAY_NAME = "headrace-replay"


class ReplayError(Exception):
    pass


@dataclass
class Replayed:
    key: str
    version: str
    previous_status: str | None
    outcome: str  # what the processor will do with it


def object_created_event(ref: ObjectRef, region: str, account: str) -> str:
    """The EventBridge "Object Created" event S3 emits for ``ref`` (AWS's shape)."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": account,
            # to the millisecond, as recorded: the processor orders a key's versions by it
            "time": iso(ref.uploaded_at),
            "region": region,
            "resources": [f"arn:aws:s3:::{ref.bucket}"],
            # EventBridge marks the events it replays from an archive the same way.
            "replay-name": REPLAY_NAME,
            "detail": {
                "version": "0",
                "bucket": {"name": ref.bucket},
                "object": {
                    "key": ref.key,
                    "size": ref.size or 0,
                    "etag": ref.etag,
                    **({"version-id": ref.version_id} if ref.version_id else {}),
                    # S3's own, as recorded: it orders the writes of the key (a made-up one
                    # would order this version before every other)
                    **({"sequencer": ref.sequencer} if ref.sequencer else {}),
                },
                "request-id": REPLAY_NAME,
                "requester": account,
                "reason": "PutObject",
            },
        }
    )


def _account_of(queue_url: str) -> str:
    """The account id in an SQS queue URL (``https://sqs.<region>.../<account>/<name>``)."""
    parts = queue_url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else "000000000000"


class Replayer:
    def __init__(self, outputs: StackOutputs):
        self.outputs = outputs
        self.s3 = outputs.client("s3")
        self.sqs = outputs.client("sqs")
        self.ddb = outputs.resource("dynamodb")
        self.metadata = self.ddb.Table(outputs.metadata_table)

    def current(self, key: str, version: str | None = None) -> tuple[ObjectRef, dict[str, Any]]:
        """The key's current version and its metadata item (empty if none)."""
        prefix = self.outputs.raw_prefix
        if prefix and not key.startswith(prefix):
            raise ReplayError(f"{key}: not under the raw prefix {prefix!r}; only those keys are processed")
        hidden = hidden_part(key, prefix)
        if hidden:
            raise ReplayError(f"{key}: the processor ignores it: {hidden!r} makes it a hidden file")
        suffixes = self.outputs.raw_suffixes
        if suffixes is not None and not has_raw_suffix(key, suffixes):
            raise ReplayError(
                f"{key}: the processor ignores it: it ends in none of the stack's raw_suffixes "
                f"({', '.join(suffixes)})"
            )
        if not readable_by_name(key):
            raise ReplayError(
                f"{key}: not a file type headrace reads ({extension(key)!r}): it would only fail "
                "and reach the DLQ"
            )
        try:
            head = self.s3.head_object(Bucket=self.outputs.raw_bucket, Key=key)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("403", "AccessDenied"):
                # a HEAD answer has no body: S3 answers 403 for a missing key as well when
                # the caller may not list the bucket
                raise ReplayError(
                    f"{key}: access denied (a key that does not exist, or credentials without "
                    "s3:GetObject on it and s3:ListBucket on the raw bucket: docs/operations.md)"
                ) from None
            if code not in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise
            # HEAD has no body on AWS: a missing bucket answers the same bare 404 as a missing key
            if code == "NoSuchBucket" or not self._raw_bucket_exists():
                raise ReplayError(
                    f"the raw bucket {self.outputs.raw_bucket} does not exist (an outputs file of "
                    "another stack, or one destroyed since?)"
                ) from None
            raise ReplayError(f"{key}: no such object in {self.outputs.raw_bucket} (deleted?)") from None
        version_id = head.get("VersionId")
        version_id = None if version_id in (None, "null") else str(version_id)
        if version is not None and version != version_id:
            raise ReplayError(
                f"{key}: version {version} is not the current version ({version_id}); the processor "
                "only processes a key's current version and skips older ones as superseded"
            )
        etag = str(head.get("ETag", "")).strip('"')
        probe = ObjectRef(
            bucket=self.outputs.raw_bucket,
            key=key,
            version_id=version_id,
            etag=etag,
            uploaded_at=head["LastModified"],
        )
        with naming(f"the metadata table {self.outputs.metadata_table}"):
            item = dict(
                self.metadata.get_item(Key={"object_key": key, "version": probe.version}).get("Item") or {}
            )
        # The processor's own record of when this version arrived (it orders versions and
        # names the output partition); the object's LastModified if it never saw it.
        uploaded_at = head["LastModified"]
        if item.get("uploaded_at"):
            uploaded_at = datetime.fromisoformat(str(item["uploaded_at"]).replace("Z", "+00:00"))
        ref = probe.model_copy(
            update={
                "size": int(head.get("ContentLength", 0)),
                "uploaded_at": uploaded_at,
                "sequencer": item.get("sequencer"),
            }
        )
        return ref, item

    def _raw_bucket_exists(self) -> bool:
        try:
            self.s3.head_bucket(Bucket=self.outputs.raw_bucket)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    def idempotency_record(self, ref: ObjectRef) -> tuple[Any, str, dict[str, Any]]:
        """The processor's idempotency table, the record id for ``ref``, and the record (or {})."""
        function = dict(self.outputs.get("function_names"))["processor"]
        table = self.ddb.Table(self.outputs.get("idempotency_table"))
        record_id = processor_idempotency_key(function, ref)
        with naming(f"the idempotency table {table.name}"):
            record = dict(table.get_item(Key={"id": record_id}).get("Item") or {})
        if record.get("expiration") is not None and int(record["expiration"]) < time.time():
            # past its window: Powertools ignores it, though DynamoDB's TTL deletes it late
            record = {}
        elif (
            record.get("status") == "INPROGRESS"
            and record.get("in_progress_expiration") is not None
            and int(record["in_progress_expiration"]) < time.time() * 1000
        ):
            # the invocation that held it ran out of time (killed: a timeout, out of memory)
            # and left it behind: Powertools takes it over, so nothing is in progress
            record = {}
        return table, record_id, record

    def replay(self, key: str, *, version: str | None, force: bool, dry_run: bool) -> Replayed:
        ref, item = self.current(key, version)
        status = item.get("status")
        if item.get("superseded_by"):
            # current again (the newer version was deleted by its version id), but recorded as
            # replaced: the processor would skip it, and --force would turn its record from
            # completed into a skipped version
            raise ReplayError(
                f"{key}: version {ref.version} is current again, but the pipeline recorded it as "
                f"superseded by version {item['superseded_by']} and skips it: to bring its data back, "
                "copy it over the key (a new version, processed like any upload: docs/operations.md, "
                '"How replay works")'
            )
        table, record_id, record = self.idempotency_record(ref)
        remembered = record.get("status")
        if remembered == "COMPLETED" and not force and item.get("skip_reason"):
            # the processor's work ended without processing it: skipped as superseded while
            # a newer version was current (deleted by its version id since)
            outcome = (
                f"acknowledged without work: the processor skipped this version recently "
                f"({item['skip_reason']}) and remembers it as done (--force processes it)"
            )
        elif remembered == "COMPLETED" and not force:
            outcome = (
                "acknowledged without work: this version completed recently (--force processes it again)"
            )
        elif remembered == "INPROGRESS":
            outcome = (
                "retried until the delivery now in progress ends, then acknowledged "
                "(processed, should that delivery fail)"
            )
        elif status == "completed" or remembered == "COMPLETED":
            outcome = "processed again (same outputs, overwritten; the warehouse replaces its rows)"
        else:
            outcome = "processed"
        if not dry_run:
            if force and remembered == "COMPLETED":
                table.delete_item(Key={"id": record_id})
            with naming(f"the processing queue (processing_queue_url: {self.outputs.processing_queue_url})"):
                self.sqs.send_message(
                    QueueUrl=self.outputs.processing_queue_url,
                    MessageBody=object_created_event(
                        ref, self.outputs.region, _account_of(self.outputs.processing_queue_url)
                    ),
                )
        return Replayed(key, ref.version, status, outcome)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="process raw objects again: announce their current version to the processing queue",
        description=__doc__,
        formatter_class=DocstringHelp,
    )
    p.add_argument("keys", nargs="+", metavar="KEY", help="raw object key (under the raw prefix)")
    add_outputs_option(p)
    p.add_argument("--version", help="replay only if this is still the key's current version (one KEY)")
    p.add_argument(
        "--force",
        action="store_true",
        help="forget the processor's idempotency record first, so a completed version is processed again",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be sent, send nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.version and len(args.keys) != 1:
        return _fail("--version applies to one KEY only")
    try:
        replayer = Replayer(StackOutputs.load(args.outputs))
    except OutputsError as exc:
        return _fail(str(exc))
    failed = 0
    for key in args.keys:
        try:
            done = replayer.replay(key, version=args.version, force=args.force, dry_run=args.dry_run)
        except (ReplayError, OutputsError) as exc:  # they quote the key: shown escaped
            print(f"headrace: error: {printable(str(exc))}", file=sys.stderr)
            failed += 1
            continue
        except ClientError as exc:  # this key's request was refused: the next may not be
            print(f"headrace: error: {printable(key)}: {printable(str(exc))}", file=sys.stderr)
            failed += 1
            continue
        except BotoCoreError as exc:
            return _fail(f"cannot reach the stack in {args.outputs}: {exc}")
        verb = "would replay" if args.dry_run else "replayed"
        was = f" (was {done.previous_status})" if done.previous_status else " (never processed)"
        print(f"{verb} {printable(done.key)} version {done.version}{was}: {done.outcome}")
    return 2 if failed else 0


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2
