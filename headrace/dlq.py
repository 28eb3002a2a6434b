"""``headrace dlq inspect|redrive``: what waits in a dead-letter queue, why, and moving it back.

    headrace dlq inspect --queue processing                   # list, with the failure reasons
    headrace dlq redrive --queue processing                   # dry run: what would move
    headrace dlq redrive --queue processing --execute         # move it back to the work queue

``inspect`` never consumes a message: it receives each, keeps it hidden while it scans,
and makes them all visible again when it is done. Each message is shown with what it is
about (processing and load: the object key and version; ingest: the tenant and log id,
never the text) and the failure the pipeline recorded for it (the metadata item's
``error``/``last_error``, or ``load_error`` for the load queue; EventBridge's
``ERROR_CODE``/``ERROR_MESSAGE`` for events it could not deliver). With ``--prefix``, the
listing and the dry run look through as much of the DLQ as the redrive does. A scan that
cannot keep what it passed over hidden stops, says how far it got, and exits 1.

``redrive`` is a dry run unless ``--execute`` is given. It moves messages back to the queue
the DLQ serves: with SQS's message move task (``StartMessageMoveTask``) where the service
has it (AWS, LocalStack 3.1+), otherwise (the embedded runtime's emulator, or with
``--prefix``/``--limit``, which a move task cannot honour) by receive, send, delete in
batches of ten. A message is sent before it is deleted, so an interrupted redrive loses
nothing; one that is sent twice is processed once (every stage is idempotent). With
``--json`` a dry run prints ``{"dry_run": true, "queue": ..., "would_move": N, "messages": [...]}``
and a redrive its result with ``"dry_run": false``; a listing of fewer messages than wait
says so on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from handlers.dal.queues import message_counts
from handlers.logic.printable import printable
from handlers.models.events import ObjectRef
from handlers.models.loader import FileProcessedEvent
from headrace.outputs import (
    DocstringHelp,
    OutputsError,
    StackOutputs,
    add_outputs_option,
    naming,
)

# --queue NAME -> (work queue output, its DLQ output)
QUEUES = {
    "processing": ("processing_queue_url", "processing_dlq_url"),
    "load": ("load_queue_url", "load_dlq_url"),
    "ingest": ("ingest_queue_url", "ingest_dlq_url"),
}
# How long a message listed or being moved stays hidden from other readers.
PEEK_VISIBILITY_SECONDS = 30
MOVE_VISIBILITY_SECONDS = 120
# A pass that runs longer renews what it holds for as long as it has run, at most this long
# at a time (a pass killed without its cleanup leaves them hidden for at most that long).
MAX_HOLD_SECONDS = 3600
# How many messages a listing shows (without --limit). With --prefix it receives as many as
# it takes to find them, as the redrive does.
LISTING_LIMIT = 1000
BATCH = 10  # SQS batch limit
# Errors by which a service says it has no message move task (emulators): the redrive then
# moves messages itself. moto's server answers an unknown action with a bare HTTP 500
# whose code is "500"; LocalStack before 3.1 and others use these codes.
UNSUPPORTED_CODES = frozenset(
    {"InvalidAction", "UnknownOperationException", "UnsupportedOperation", "NotImplemented", "501"}
)
SUPERSEDED_NOTE = "a newer version of this key replaced it: a redrive acknowledges it without processing"


class DlqError(Exception):
    pass


@dataclass
class DeadLetter:
    """One message of a DLQ, with what the pipeline knows about it."""

    message_id: str
    subject: str  # object key, or tenant/log id
    version: str | None
    sent_at: str | None
    receives: int  # receives before this listing: work queue and DLQ, earlier listings included
    status: str | None  # metadata status (load_status for the load queue)
    reason: str
    attempts: int | None = None
    note: str | None = None
    # not shown: what a manual move re-sends
    receipt_handle: str = field(default="", repr=False)
    body: str = field(default="", repr=False)
    attributes: dict[str, Any] = field(default_factory=dict, repr=False)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        for private in ("receipt_handle", "body", "attributes"):
            data.pop(private)
        return data


# ------------------------------------------------------------------------------ reading
def _iso_ms(value: str | None) -> str | None:
    if not value or not value.isdigit():
        return None
    moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Sweep:
    """One pass over a queue: receives every message it can see, once each, and keeps each
    hidden from other readers, and from its own later receives, until the caller deletes it
    or the pass ends with :meth:`release`.

    A message is received with a visibility timeout of ``visibility`` seconds, and renewed
    before that runs out for as long as the pass goes on: each renewal hides it for as long
    as the pass has run so far (at least ``visibility``, at most ``MAX_HOLD_SECONDS``), so a
    long pass renews each message a few times, not every ``visibility`` seconds. Should a
    held message come back all the same (a renewal refused or too late), the pass stops and
    says so (``complete`` False): the end of the queue it would otherwise see there is not
    the end."""

    def __init__(self, sqs: Any, url: str, visibility: int, clock: Callable[[], float] = time.monotonic):
        self.sqs, self.url, self.visibility, self.clock = sqs, url, visibility, clock
        self.started = clock()
        self.held: dict[str, str] = {}  # message id -> its newest receipt handle
        self.hidden_until: dict[str, float] = {}  # message id -> when it shows again (clock)
        # (hidden_until, message id), soonest first: renew() looks only at the messages due,
        # not at every held one (a pass over 100,000 messages renews on each receive).
        # Entries whose time was renewed or whose message was deleted are skipped.
        self._showing: list[tuple[float, str]] = []
        self.received: dict[str, int] = {}  # message id -> receives by this pass
        self.complete = True

    @property
    def examined(self) -> int:
        """How many distinct messages this pass has received."""
        return len(self.received)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """The messages of each receive that this pass had not received before.

        Ends after two receives in a row bring nothing (the second one long-polls for a
        second, which asks every SQS server, so an empty answer means the queue has no more
        visible messages), or when a message it holds comes back or SQS refuses to hold more
        (``complete`` False). The caller stops early by leaving the loop."""
        empty = 0
        while empty < 2:
            self.renew()
            received_at = self.clock()
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=BATCH,
                    VisibilityTimeout=self.visibility,
                    WaitTimeSeconds=1 if empty else 0,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "OverLimit":
                    raise
                # SQS holds at most about 120,000 messages of a queue in flight: this pass
                # hides all it has seen, so it can see no further
                self.complete = False
                return
            fresh, came_back = [], False
            for message in messages:
                ident = message["MessageId"]
                if ident in self.received:
                    came_back = True
                else:
                    fresh.append(message)
                self.received[ident] = self.received.get(ident, 0) + 1
                self.held[ident] = message["ReceiptHandle"]
                self._hide(ident, received_at + self.visibility)
            empty = 0 if messages else empty + 1
            if fresh:
                yield fresh
            if came_back:
                self.complete = False
                return

    def renew(self) -> None:
        """Hide again, for longer, each held message that would show within half the
        visibility timeout."""
        now = self.clock()
        due = []
        while self._showing and self._showing[0][0] - now < self.visibility / 2:
            until, ident = heapq.heappop(self._showing)
            if ident in self.held and self.hidden_until[ident] == until:
                due.append(ident)
        hold = int(min(MAX_HOLD_SECONDS, max(self.visibility, now - self.started)))
        for start in range(0, len(due), BATCH):
            chunk = due[start : start + BATCH]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": self.held[i], "VisibilityTimeout": hold}
                    for n, i in enumerate(chunk)
                ],
            )
            # one refused (its handle expired) shows again: batches() notices and stops
            for i in chunk:
                self._hide(i, now + hold)

    def _hide(self, ident: str, until: float) -> None:
        self.hidden_until[ident] = until
        heapq.heappush(self._showing, (until, ident))

    def forget(self, message_id: str) -> None:
        """The message is gone from the queue (deleted): nothing to renew or release."""
        self.held.pop(message_id, None)
        self.hidden_until.pop(message_id, None)

    def release(self) -> None:
        """Make every message still held visible again now."""
        release(self.sqs, self.url, self.held.values())
        self.held.clear()
        self.hidden_until.clear()
        self._showing.clear()


def release(sqs: Any, url: str, receipt_handles: Iterable[str]) -> None:
    """Make messages visible again now. A handle that expired meanwhile needs nothing."""
    handles = list(receipt_handles)
    for start in range(0, len(handles), BATCH):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(handles[start : start + BATCH])
            ],
        )


class Describer:
    """Turns a raw DLQ message into a :class:`DeadLetter` (one metadata read per message)."""

    def __init__(self, queue: str, metadata_table: Any):
        self.queue = queue
        self.table = metadata_table

    def __call__(self, message: dict[str, Any]) -> DeadLetter:
        system = message.get("Attributes", {})
        attributes = message.get("MessageAttributes", {}) or {}
        letter = DeadLetter(
            message_id=message["MessageId"],
            subject="",
            version=None,
            sent_at=_iso_ms(system.get("SentTimestamp")),
            receives=int(system.get("ApproximateReceiveCount", 0) or 0),
            status=None,
            reason="",
            receipt_handle=message.get("ReceiptHandle", ""),
            body=message.get("Body", ""),
            attributes=attributes,
        )
        describe = {"processing": self._processing, "load": self._load, "ingest": self._ingest}[self.queue]
        delivery = _eventbridge_failure(attributes)
        describe(letter, not delivery)
        if delivery:  # EventBridge could not deliver it to the queue at all
            letter.reason = delivery if not letter.reason else f"{delivery}; {letter.reason}"
        letter.reason = letter.reason or "no failure recorded"
        return letter

    def subject(self, message: dict[str, Any]) -> str:
        """What the message is about (object key, or tenant/log id) without reading the table."""
        body = message.get("Body", "")
        try:
            if self.queue == "processing":
                return ObjectRef.from_event(S3EventNotificationEventBridgeModel.model_validate_json(body)).key
            if self.queue == "load":
                return FileProcessedEvent.model_validate_json(body).detail.object_key
            data = json.loads(body)
            return f"{data['tenant_id']}/{data['log_id']}"
        except (ValidationError, ValueError, KeyError, TypeError):
            return ""

    def _item(self, key: str, version: str) -> dict[str, Any]:
        with naming(f"the metadata table {self.table.name}"):
            return dict(self.table.get_item(Key={"object_key": key, "version": version}).get("Item") or {})

    def _processing(self, letter: DeadLetter, received: bool) -> None:
        try:
            ref = ObjectRef.from_event(S3EventNotificationEventBridgeModel.model_validate_json(letter.body))
        except (ValidationError, ValueError) as exc:
            letter.subject = "(not an S3 Object Created event)"
            letter.reason = f"the processor cannot parse this message: {_first_line(exc)}"
            return
        letter.subject, letter.version = ref.key, ref.version
        item = self._item(ref.key, ref.version)
        if not item:
            letter.reason = "no metadata item: the processor never recorded this version (or it expired)"
            return
        letter.status = item.get("status")
        letter.attempts = _int(item.get("attempts"))
        letter.reason = str(item.get("error") or item.get("last_error") or "")
        if letter.status == "completed" and not letter.reason:
            letter.reason = _completed_but_dead(item)
        elif received and letter.status in ("received", "processing"):
            letter.reason = _cut_off("processor", item.get("last_error"))
        elif NOT_STARTED in letter.reason and item.get("last_error"):
            # the last receive found no time to start it: the attempts before say why
            letter.reason += f"; an earlier attempt failed with: {item['last_error']}"
        if letter.status == "failed" and item.get("failure_kind") == "permanent":
            letter.note = PERMANENT_NOTE
        if item.get("superseded_by"):
            letter.note = f"superseded by version {item['superseded_by']}: {SUPERSEDED_NOTE}"

    def _load(self, letter: DeadLetter, received: bool) -> None:
        try:
            detail = FileProcessedEvent.model_validate_json(letter.body).detail
        except (ValidationError, ValueError) as exc:
            letter.subject = "(not a File Processed event)"
            letter.reason = f"the loader cannot parse this message: {_first_line(exc)}"
            return
        letter.subject, letter.version = detail.object_key, detail.version
        item = self._item(detail.object_key, detail.version)
        if not item:
            letter.reason = "no metadata item for this version (expired?)"
            return
        letter.status = item.get("load_status")
        letter.attempts = _int(item.get("load_attempts"))
        letter.reason = str(item.get("load_error") or "")
        if received and letter.status is None:
            letter.reason = _cut_off("loader", item.get("load_error"))
        if letter.status == "rejected":
            letter.note = REJECTED_NOTE
        if item.get("superseded_by"):
            letter.note = f"superseded by version {item['superseded_by']}: {SUPERSEDED_NOTE}"

    def _ingest(self, letter: DeadLetter, received: bool) -> None:
        # Only the identifiers: the message text is unredacted and must not be printed.
        try:
            data = json.loads(letter.body)
            tenant, log_id = str(data["tenant_id"]), str(data["log_id"])
        except (ValueError, KeyError, TypeError):
            letter.subject = "(not an ingest message)"
            letter.reason = "the ingest worker cannot parse this message"
            return
        letter.subject, letter.version = f"{tenant}/{log_id}", None
        letter.reason = (
            f"not recorded outside the logs: search the ingest-worker's log group for log_id {log_id}"
        )


def _cut_off(function: str, earlier: Any) -> str:
    """Why a version whose item records no outcome of its last attempt is a dead letter: the
    function records every failure it sees (the last one as failed), so that attempt's
    invocation ended without it, cut off at the function's timeout or memory size, or crashed."""
    reason = (
        f"the {function}'s last attempt ended without recording an outcome: its invocation was cut "
        f"off at the function's timeout or memory size, or crashed (its log at that time says which: "
        f"'Task timed out', 'Runtime.OutOfMemory'); raise functions.{function}.timeout_seconds or "
        "memory_mb, then redrive"
    )
    return f"{reason}; an earlier attempt failed with: {earlier}" if earlier else reason


# What a failure recorded on a last receive that had no time to start the record says
# (``TimeBudget.not_started``): not the cause, which an earlier attempt recorded, if any.
NOT_STARTED = "receives: not started:"

# A processing DLQ message of a file the processor found it cannot process (failure_kind
# permanent): no retry could change that.
PERMANENT_NOTE = (
    "the file itself cannot be processed (a permanent failure, not a transient one): a redrive "
    "fails again; upload a corrected file under the same key (or restore an archived object, "
    "then redrive or headrace replay it)"
)

# A load DLQ message whose load PostgreSQL has since rejected for good (the loader then records
# it ``rejected`` and acknowledges it: no retry, no dead letter).
REJECTED_NOTE = (
    "PostgreSQL rejected this load for good (load status rejected): redriven before its cause "
    "is fixed, it is rejected again and leaves the DLQ; fix the cause first (the reason says what)"
)


def _completed_but_dead(item: dict[str, Any]) -> str:
    """Why a version the processor marked completed is in the processing DLQ all the same.

    Its last attempts did not end normally after the completed mark (the invocation timed
    out or crashed before the message was acknowledged; marking completed clears the
    recorded errors). The "File Processed" event is published after that mark: the load
    status tells whether the loader got it."""
    load_status = item.get("load_status")
    if load_status == "loaded":
        return (
            f"completed and loaded ({item.get('load_rows', '?')} rows), but the invocation did not end "
            "normally after that (a timeout or a crash): nothing is missing; a redrive is harmless"
        )
    if load_status == "failed":
        return f"completed, but loading it failed (see the load DLQ): {item.get('load_error') or 'no reason'}"
    if load_status == "rejected":
        return (
            "completed, but PostgreSQL rejected its load for good (not retried, not in the load "
            f"DLQ): {item.get('load_error') or 'no reason'}"
        )
    if load_status:
        return f"completed (load status {load_status}), but the invocation did not end normally after that"
    if item.get("load_error") or item.get("load_attempts"):
        return (
            "completed, and the loader has its File Processed event but has not loaded it yet "
            f"(retrying: {item.get('load_error') or 'no error recorded'})"
        )
    return (
        "completed, but the invocation did not end normally after it was marked completed (a timeout "
        "or a crash): its File Processed event may not have been sent, and it is not loaded (no "
        "load status). Redrive it to have it loaded: it is processed again (the same outputs; "
        "the warehouse replaces its rows), unless the processor recorded the work as done, which "
        "it does only once the event is sent"
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _eventbridge_failure(attributes: dict[str, Any]) -> str:
    code = (attributes.get("ERROR_CODE") or {}).get("StringValue")
    message = (attributes.get("ERROR_MESSAGE") or {}).get("StringValue")
    if not code and not message:
        return ""
    return f"EventBridge could not deliver it to the queue: {code or ''} {message or ''}".strip()


@dataclass
class Listing:
    """What a listing found: the messages described, and how many it saw."""

    letters: list[DeadLetter]
    selected: int  # messages ``select`` accepted (more than listed when ``count_all``)
    examined: int  # distinct messages received
    complete: bool = True  # False: the scan stopped before the end (see :class:`Sweep`)


def inspect_dlq(
    sqs: Any,
    dlq_url: str,
    describe: Callable[[dict[str, Any]], DeadLetter],
    limit: int,
    *,
    select: Callable[[dict[str, Any]], bool] = lambda _: True,
    count_all: bool = False,
    visibility: int | None = None,
) -> Listing:
    """The first ``limit`` messages of a DLQ that ``select`` accepts, described; every one
    is visible again when this returns.

    Selects before it limits, and receives until ``limit`` messages are selected or the
    DLQ has no more, as :func:`move_manually` does, so a dry run lists what the redrive
    would move, however many other messages wait before them. With ``count_all`` it goes on
    to the end of the DLQ, counting the selected messages beyond ``limit`` (a dry run of a
    redrive that has no limit)."""
    sweep = Sweep(sqs, dlq_url, visibility or PEEK_VISIBILITY_SECONDS)
    chosen: list[dict[str, Any]] = []
    selected = 0
    try:
        for batch in sweep.batches():
            for message in batch:
                if select(message):
                    selected += 1
                    if len(chosen) < limit:
                        chosen.append(message)
            if selected >= limit and not count_all:
                break
        letters = [describe(m) for m in chosen]
        for letter in letters:  # this listing's own receives are no attempts
            letter.receives = max(0, letter.receives - sweep.received.get(letter.message_id, 0))
        return Listing(letters, selected, sweep.examined, sweep.complete)
    finally:
        sweep.release()


# ------------------------------------------------------------------------------ moving
@dataclass
class RedriveResult:
    method: str  # "move-task" | "receive-send-delete"
    moved: int
    left: int = 0  # matching messages that could not be sent (still in the DLQ)
    task: dict[str, Any] | None = None
    examined: int | None = None  # messages received (a manual move)
    complete: bool = True  # False: the scan stopped before the end (see :class:`Sweep`)
    repeated: int = 0  # messages this run moved that came back to the DLQ meanwhile (left there)
    undeleted: int = 0  # sent to the work queue, but SQS refused to delete them from the DLQ
    undeleted_reason: str = ""  # the first refusal's code and message


def _unsupported(exc: Exception) -> bool:
    """Whether ``exc`` says "this service has no message move task" (and nothing else)."""
    if isinstance(exc, NotImplementedError):  # moto in-process
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in UNSUPPORTED_CODES or code == "500"
    return False


def queue_arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def move_with_task(
    sqs: Any,
    dlq_arn: str,
    target_arn: str,
    *,
    wait_seconds: float = 900,
    poll_seconds: float = 2,
    progress: Callable[[str], None] = lambda _: None,
) -> RedriveResult | None:
    """Move everything with SQS's message move task; None when the service has none.

    The destination is always given (the work queue), so messages EventBridge put into the
    DLQ itself (they never came from a source queue) go back too. Refuses to start a second
    task while one is running on the same DLQ."""
    try:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10).get("Results", [])
    except (ClientError, NotImplementedError) as exc:
        if _unsupported(exc):
            return None
        raise
    running = [t for t in tasks if t.get("Status") == "RUNNING"]
    if running:
        raise DlqError(
            f"a message move task is already running on this DLQ (handle {running[0].get('TaskHandle')}); "
            "wait for it, or cancel it with: aws sqs cancel-message-move-task --task-handle <handle>"
        )
    handle = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=target_arn)["TaskHandle"]
    progress(f"started message move task {handle}")
    deadline = time.monotonic() + wait_seconds
    latest: dict[str, Any] = {}
    # The task runs on without this command: one that stops waiting (an error, Ctrl-C)
    # says so, or the operator takes the DLQ for untouched and the next redrive is refused.
    goes_on = (
        f"the message move task {handle} goes on without this command "
        f"(aws sqs list-message-move-tasks --source-arn {dlq_arn})"
    )
    try:
        while time.monotonic() < deadline:
            tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
            latest = tasks[0] if tasks else {}
            status = latest.get("Status")
            if status in ("COMPLETED", "CANCELLED", "FAILED"):
                break
            progress(
                f"  {latest.get('ApproximateNumberOfMessagesMoved', 0)} of "
                f"{latest.get('ApproximateNumberOfMessagesToMove', '?')} moved"
            )
            time.sleep(poll_seconds)
        else:
            raise DlqError(f"the move task still runs after {wait_seconds:.0f} s: {goes_on}")
    except (BotoCoreError, ClientError) as exc:
        raise DlqError(f"cannot follow the move task any more ({exc}); {goes_on}") from exc
    except KeyboardInterrupt:
        print(f"headrace: {goes_on}", file=sys.stderr)
        raise
    if latest.get("Status") != "COMPLETED":
        raise DlqError(
            f"the move task ended {latest.get('Status')}: {latest.get('FailureReason') or 'no reason given'}"
        )
    return RedriveResult("move-task", int(latest.get("ApproximateNumberOfMessagesMoved", 0)), task=latest)


def _resend_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Message attributes as SendMessage takes them (a received one carries extra fields)."""
    sendable: dict[str, Any] = {}
    for name, value in attributes.items():
        kept = {k: value[k] for k in ("DataType", "StringValue", "BinaryValue") if k in value}
        if "DataType" in kept and len(kept) > 1:
            sendable[name] = kept
    return sendable


def move_manually(
    sqs: Any,
    dlq_url: str,
    target_url: str,
    *,
    select: Callable[[dict[str, Any]], bool] = lambda _: True,
    limit: int = 1_000_000,
    progress: Callable[[str], None] = lambda _: None,
    visibility: int | None = None,
) -> RedriveResult:
    """Receive from the DLQ, send to the work queue, then delete from the DLQ, ten at a time.

    Messages ``select`` rejects, and any the queue refuses, stay in the DLQ (made visible
    again at the end). Send before delete: an interruption leaves a message in both queues,
    never in neither. Scans as :func:`inspect_dlq` does (:class:`Sweep`): receives that
    bring only rejected messages do not end it, since the selected ones may wait behind
    them.

    A message this run moved may fail again and land in the DLQ again before the run ends
    (a poison file): it is not moved a second time, nor counted, nor given a ``limit``
    slot, but left in the DLQ (``repeated``). One sent whose delete SQS refused
    (``undeleted``) takes its ``limit`` slot: ``limit`` bounds what reaches the work queue. It is known by the message id the send gave
    it (SQS keeps the id when it moves a message to a DLQ) or by its body: a message with
    the body of one this run moved is left too."""
    moved, failed, repeated, undeleted, undeleted_reason = 0, 0, 0, 0, ""
    sent_ids: set[str] = set()  # ids the work queue gave the messages this run sent
    sent_bodies: set[str] = set()  # digests of their bodies
    sweep = Sweep(sqs, dlq_url, visibility or MOVE_VISIBILITY_SECONDS)
    try:
        try:
            for fresh in sweep.batches():
                batch: list[dict[str, Any]] = []
                for m in fresh:  # what is not moved stays held: released at the end
                    if m["MessageId"] in sent_ids or _digest(m["Body"]) in sent_bodies:
                        repeated += 1
                    elif select(m) and len(batch) + moved + undeleted < limit:
                        batch.append(m)
                if not batch:
                    continue
                entries = [
                    {
                        "Id": str(i),
                        "MessageBody": m["Body"],
                        **(
                            {"MessageAttributes": attrs}
                            if (attrs := _resend_attributes(m.get("MessageAttributes") or {}))
                            else {}
                        ),
                    }
                    for i, m in enumerate(batch)
                ]
                sent = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
                ok = {entry["Id"] for entry in sent.get("Successful", [])}
                sent_ids.update(entry["MessageId"] for entry in sent.get("Successful", []))
                sent_bodies.update(_digest(m["Body"]) for i, m in enumerate(batch) if str(i) in ok)
                failed += len(batch) - len(ok)
                delete = [(str(i), m) for i, m in enumerate(batch) if str(i) in ok]
                refused: list[dict[str, Any]] = []
                if delete:
                    refused = sqs.delete_message_batch(
                        QueueUrl=dlq_url,
                        Entries=[{"Id": i, "ReceiptHandle": m["ReceiptHandle"]} for i, m in delete],
                    ).get("Failed", [])
                # A refused delete (a receipt handle that expired meanwhile) leaves the message
                # in both queues: sent, so not released nor moved again by this run, but not
                # counted as moved either.
                if refused and not undeleted_reason:
                    undeleted_reason = (
                        f"{refused[0].get('Code', '?')}: {refused[0].get('Message', '')}".strip()
                    )
                undeleted += len(refused)
                for _, m in delete:
                    sweep.forget(m["MessageId"])
                moved += len(delete) - len(refused)
                progress(f"  {moved} moved")
                if moved + undeleted >= limit:  # both were sent: --limit bounds the sends
                    break
        finally:
            sweep.release()
    except (BotoCoreError, ClientError) as exc:
        # one line that says what moved, not "cannot read the stack": the operator would
        # not know whether the DLQ is as it was
        raise DlqError(
            f"the redrive stopped: {_first_line(exc)}; {_moved_so_far(moved, target_url)}"
        ) from exc
    except KeyboardInterrupt:
        print(f"headrace: the redrive was interrupted; {_moved_so_far(moved, target_url)}", file=sys.stderr)
        raise
    return RedriveResult(
        "receive-send-delete",
        moved,
        left=failed,
        examined=sweep.examined,
        complete=sweep.complete,
        repeated=repeated,
        undeleted=undeleted,
        undeleted_reason=undeleted_reason,
    )


def _moved_so_far(moved: int, target_url: str) -> str:
    return (
        f"{moved} message(s) had moved back to {target_url}, the rest stay in the DLQ (a batch cut "
        "off between its send and its delete is in both queues, and is processed once): run the "
        "redrive again to move them"
    )


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


# ------------------------------------------------------------------------------ command
def register(subparsers: Any) -> None:
    dlq = subparsers.add_parser(
        "dlq",
        help="inspect a dead-letter queue, or move its messages back (dry run unless --execute)",
        description=__doc__,
        formatter_class=DocstringHelp,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    for name, help_text in (
        ("inspect", "list a DLQ's messages with their failure reasons, without consuming them"),
        ("redrive", "move a DLQ's messages back to their work queue (dry run unless --execute)"),
    ):
        p = actions.add_parser(name, help=help_text, description=help_text)
        add_outputs_option(p)
        p.add_argument("--queue", choices=sorted(QUEUES), required=True, help="which stage's DLQ")
        p.add_argument(
            "--prefix",
            default="",
            help="only messages whose object key (ingest: tenant/log id) starts with this",
        )
        p.add_argument(
            "--limit",
            type=_positive,
            default=None,
            help="at most this many of the messages --prefix selects (listing: 1000 by default)",
        )
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        if name == "redrive":
            p.add_argument("--execute", action="store_true", help="really move them (default: dry run)")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        return _fail("--limit must be at least 1")
    try:
        outputs = StackOutputs.load(args.outputs)
        queue_url = str(outputs.get(QUEUES[args.queue][0]))
        dlq_url = str(outputs.get(QUEUES[args.queue][1]))
        sqs = outputs.client("sqs")
        describe = Describer(args.queue, outputs.resource("dynamodb").Table(outputs.metadata_table))
        if args.dlq_command == "redrive" and args.execute:
            return _redrive(args, outputs, sqs, queue_url, dlq_url, describe)
        limit = args.limit or LISTING_LIMIT
        depth = _depth(sqs, args.queue, dlq_url)  # before the listing hides what it reads
        listing = inspect_dlq(
            sqs,
            dlq_url,
            describe,
            limit,
            select=_selector(describe, args.prefix),
            # a dry run of a redrive with --prefix and no --limit counts every match
            count_all=bool(args.prefix) and args.limit is None,
        )
    except (OutputsError, DlqError) as exc:
        return _fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return _fail(f"cannot read the stack in {args.outputs}: {exc}")
    letters = listing.letters
    if not listing.complete:
        _incomplete(listing.examined, depth, "listed")
    if not args.prefix and args.limit is None:  # --execute moves every message, listed or not
        would_move = max(depth, len(letters))
    else:  # what --execute selects: every match, or the first --limit of them
        would_move = min(listing.selected, args.limit or listing.selected)
    if args.json:
        listed = [letter.public() for letter in letters]
        # A redrive's JSON says whether it moved anything: this one did not.
        document: Any = (
            {"dry_run": True, "queue": args.queue, "would_move": would_move, "messages": listed}
            if args.dlq_command == "redrive"
            else listed
        )
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        # what the text's heading says: a reader of the JSON alone would take the list for all
        if args.prefix and listing.selected > len(letters):
            left_out = f"{len(letters)} of the {listing.selected} message(s) --prefix selects"
        elif not args.prefix and depth > len(letters):
            left_out = f"{len(letters)} of about {depth} message(s) in the DLQ"
        else:
            left_out = ""
        if left_out:
            print(f"headrace: note: listed {left_out} (--limit N lists up to N)", file=sys.stderr)
        return 0 if listing.complete else 1
    sys.stdout.write(render(args.queue, dlq_url, letters, depth, prefix=args.prefix, listing=listing))
    if args.dlq_command == "redrive":
        sys.stdout.write(
            f"\nDry run: {would_move} message(s) would move back to the {args.queue} queue "
            f"({queue_url}).\nRun again with --execute to move them.\n"
        )
    return 0 if listing.complete else 1


def _redrive(
    args: argparse.Namespace,
    outputs: StackOutputs,
    sqs: Any,
    queue_url: str,
    dlq_url: str,
    describe: Describer,
) -> int:
    say = (lambda _: None) if args.json else (lambda line: print(line, flush=True))
    depth = _depth(sqs, args.queue, dlq_url)
    with naming(f"the {args.queue} queue ({QUEUES[args.queue][0]}: {queue_url})"):
        target_arn = queue_arn(sqs, queue_url)  # before a message leaves the DLQ
    result: RedriveResult | None = None
    if not args.prefix and args.limit is None:
        # A probe that fails fast: an emulator answers an unknown action with an error that
        # the default retry policy would repeat.
        probe = _single_attempt_sqs(outputs)
        result = move_with_task(probe, queue_arn(sqs, dlq_url), target_arn, progress=say)
        if result is None:
            say("this service has no message move task: moving messages one batch at a time")
    if result is None:
        result = move_manually(
            sqs,
            dlq_url,
            queue_url,
            select=_selector(describe, args.prefix),
            limit=args.limit or 1_000_000,
            progress=say,
        )
    if args.json:
        json.dump({"dry_run": False, **asdict(result)}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(
            f"Moved {result.moved} message(s) from the {args.queue} DLQ back to {queue_url} "
            f"({result.method})."
        )
        if result.left:
            print(f"{result.left} message(s) could not be sent and stay in the DLQ.")
        if result.undeleted:
            print(
                f"{result.undeleted} message(s) went back to the queue but SQS refused to delete them "
                f"from the DLQ ({result.undeleted_reason}): they are in both queues. The pipeline "
                "processes a file once however often its message arrives; a later redrive sends "
                "the DLQ copies once more (handled as duplicates) and clears them, or `aws sqs "
                "delete-message` removes them."
            )
        if result.repeated:
            print(
                f"{result.repeated} message(s) left in the DLQ: this run had moved the same message "
                "already, and it failed again and came back while the redrive ran (or it was a "
                "duplicate); `headrace dlq inspect` shows why."
            )
    if not result.complete:
        _incomplete(result.examined or 0, depth, "considered for the redrive")
    return 1 if result.left or result.undeleted or not result.complete else 0


def _depth(sqs: Any, queue: str, dlq_url: str) -> int:
    """The messages of a DLQ, waiting and in flight; an error naming it if it does not exist."""
    with naming(f"the {queue} DLQ ({QUEUES[queue][1]}: {dlq_url})"):
        return sum(message_counts(dlq_url, sqs))


def _incomplete(examined: int, depth: int, done: str) -> None:
    """Say that a scan stopped before the end of the DLQ (:class:`Sweep`)."""
    rest = f"; about {depth - examined} more not examined" if depth > examined else ""
    print(
        f"headrace: warning: looked at {examined} of about {depth} message(s){rest}: a message this "
        f"command had hidden became visible again before it was done, or SQS refused to hide more "
        f"(about 120,000 in flight at most), so not every message was {done}; run it again",
        file=sys.stderr,
    )


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value}")
    return int(value)


def _selector(describe: Describer, prefix: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a raw message is about a subject starting with ``prefix`` (no table read): the
    one test the listing, the dry run and the redrive share, so they select alike."""
    if not prefix:
        return lambda _: True
    return lambda message: describe.subject(message).startswith(prefix)


def _single_attempt_sqs(outputs: StackOutputs) -> Any:
    kwargs: dict[str, Any] = {"config": Config(retries={"total_max_attempts": 1})}
    if outputs.aws_endpoint_url:
        kwargs["endpoint_url"] = outputs.aws_endpoint_url
    return outputs.session().client("sqs", **kwargs)


def render(
    queue: str,
    dlq_url: str,
    letters: Sequence[DeadLetter],
    depth: int = 0,
    *,
    prefix: str = "",
    listing: Listing | None = None,
) -> str:
    if prefix and listing is not None:
        # how many match, and out of how many looked at: "none" is a finding, not a guess
        seen = f"{listing.examined} examined" + (f" of about {depth}" if depth > listing.examined else "")
        listed = f"{listing.selected or 'no'} message(s) match --prefix {printable(prefix)} ({seen})"
        if listing.selected > len(letters):
            listed += f"; the first {len(letters)} listed"
    else:
        listed = f"{len(letters) or 'no'} message(s)"
        if depth > len(letters):
            listed += f" listed, of about {depth} in the DLQ"
    lines = [f"{queue} DLQ ({dlq_url}): {listed}"]
    for letter in letters:
        version = f"  version {letter.version}" if letter.version else ""
        lines.append("")
        lines.append(f"  {printable(letter.subject)}{version}")
        facts = [
            f"sent {letter.sent_at}" if letter.sent_at else "",
            f"received {letter.receives} time(s) before this listing (work queue and DLQ; "
            "earlier listings and dry runs count too)",
        ]
        if letter.status:
            facts.append(f"status {letter.status}")
        if letter.attempts is not None:
            facts.append(f"{letter.attempts} attempt(s)")
        lines.append("    " + ", ".join(f for f in facts if f))
        lines.append("    reason: " + printable(" ".join(letter.reason.split())[:500]))
        if letter.note:
            lines.append("    note: " + letter.note)
    return "\n".join(lines) + "\n"


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2
