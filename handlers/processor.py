"""Processor Lambda: SQS batches of S3 "Object Created" events (via EventBridge).

Each record is one object version. Records are independent: only failed records are
reported in ``batchItemFailures``, so a poison file never blocks the rest of its batch.
A poison file is recorded ``failed`` at once (``failure_kind`` ``permanent``) and retried
without delay, reaching the DLQ after ``maxReceiveCount`` receives; a redelivery of its
message fails at once, without reading or processing the file again (no retry can change
it). A transient failure is retried with the queue's backoff.
Processing keeps within the invocation's time (``handlers/logic/time_budget.py``): a file
is stopped at its deadline (a transient failure, with a reason that says which setting to
raise) and a file there is no time left to start is handed back to the queue at once. What
follows processing (writing outputs and metadata) must fit in the time kept back.
Every attempt that fails transiently is counted (``FilesRetried``): the invocation
succeeds, so Lambda's ``Errors`` never sees it.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from handlers.dal import queues
from handlers.dal.aws import access_denied
from handlers.dal.metadata import MetadataStore
from handlers.logic.faults import maybe_crash
from handlers.logic.idempotency import PROCESSOR_KEY_JMESPATH
from handlers.logic.layout import has_raw_suffix, hidden_part
from handlers.logic.malformed import HandledRecords
from handlers.logic.process_object import (
    Outcome,
    PermanentFailure,
    failed_for_good,
    process_object,
    record_failure,
    utcnow,
)
from handlers.logic.processing import OutOfMemory, OutOfScratchSpace, OutOfTime
from handlers.logic.time_budget import TimeBudget
from handlers.models.events import ObjectCreatedRecord, ObjectRef
from handlers.models.settings import ProcessorSettings

settings = ProcessorSettings.from_env()
logger = Logger(service="processor")
tracer = Tracer(service="processor")
metrics = Metrics(namespace="headrace", service="processor")
metrics.set_default_dimensions(stack=settings.stack)  # this stack's alarms select by it
batch = BatchProcessor(
    event_type=EventType.SQS, model=ObjectCreatedRecord, raise_on_entire_batch_failure=False
)
store = MetadataStore(settings.metadata_table, settings.metadata_ttl_days)
idempotency = IdempotencyConfig(
    event_key_jmespath=PROCESSOR_KEY_JMESPATH,
    raise_on_no_idempotency_key=True,
    expires_after_seconds=settings.idempotency_ttl_seconds,
)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
_handled = HandledRecords(settings.max_receive_count)  # ids that reached the record handler


def _record_metrics(outcome: Outcome) -> None:
    if outcome.status == "completed":
        metrics.add_metric(name="FilesProcessed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="RowsProcessed", unit=MetricUnit.Count, value=outcome.rows)
        metrics.add_metric(name="BytesProcessed", unit=MetricUnit.Bytes, value=outcome.bytes)
        metrics.add_metric(name="ProcessingLatency", unit=MetricUnit.Milliseconds, value=outcome.latency_ms)
    elif outcome.status == "failed":
        metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=1)


@idempotent_function(data_keyword_argument="work", config=idempotency, persistence_store=persistence)
def process(
    work: ObjectRef,
    attempt: int,
    deadline: float | None = None,
    finish_by: float | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    return process_object(
        work, settings, store, attempt, _record_metrics, deadline, finish_by, message_id
    ).as_dict()


def record_handler(record: ObjectCreatedRecord, budget: TimeBudget | None = None) -> dict[str, Any]:
    _handled.seen(record.messageId)
    ref = ObjectRef.from_event(record.body)
    attempt = int(record.attributes.ApproximateReceiveCount)
    logger.set_correlation_id(record.body.id)
    logger.append_keys(object_key=ref.key, version=ref.version, attempt=attempt)
    if ref.is_folder_marker:
        logger.info("a folder marker: nothing to process")
        return {"status": "ignored"}
    ignored = _ignored_because(ref)
    if ignored:
        # Recorded nowhere else: without the count, a file uploaded with a suffix the stack
        # does not take (data.xlsx, export.csv.zip) vanished without a trace.
        logger.warning("%s: not processed", ignored)
        metrics.add_metric(name="FilesIgnored", unit=MetricUnit.Count, value=1)
        return {"status": "ignored"}
    if attempt > 1 and (known := failed_for_good(store, ref, record.messageId)):
        # The file cannot be processed (an earlier receive of this message found so): on to
        # the DLQ without downloading and processing it again. A redrive, a replay or a
        # duplicate event is another message: processed again (a file restored meanwhile).
        logger.warning(
            "file cannot be processed (found on an earlier receive; not processed again): %s", known
        )
        record_failure(
            store, ref, known, attempt, _record_metrics, permanent=True, message_id=record.messageId
        )
        _retry_now(record)
        raise PermanentFailure(known)
    # Only work that needs time is handed back for lack of it: a file known bad fails above,
    # keeping its reason (and failure_kind) on its last receive too.
    deadline = budget.deadline() if budget else None
    if budget and deadline is None:
        # Not an attempt at the file, though SQS counts the receive: nothing is recorded on
        # it unless this was its last receive (the message goes to the DLQ next).
        not_started = budget.not_started()
        if attempt >= settings.max_receive_count:
            record_failure(
                store, ref, f"gave up after {attempt} receives: {not_started}", attempt, _record_metrics
            )
        logger.info("too little time left in this invocation to start the file: handed back to the queue")
        _retry_now(record)
        raise not_started
    maybe_crash(settings.crash_rate, attempt, ref.key)
    finish_by = budget.finish_by() if budget else None
    try:
        result = process(
            work=ref, attempt=attempt, deadline=deadline, finish_by=finish_by, message_id=record.messageId
        )
    except IdempotencyAlreadyInProgressError:
        # Another invocation is processing this very version right now (a duplicate
        # delivery): not a failure of the file. Retried later, it is acknowledged as done.
        logger.info("this version is being processed by another invocation: the message will be retried")
        raise
    except PermanentFailure as exc:
        logger.warning("file cannot be processed: %s", exc)
        _retry_now(record)
        raise
    except Exception as exc:
        # Each attempt handed back to the queue after a transient failure (S3, DynamoDB or
        # EventBridge errors, a limit of the function, access denied): it fails no
        # invocation, so the processor-failures alarm pages on this count, not at the DLQ.
        # Not counted: poison files (FilesFailed), duplicates in progress, files handed back
        # unstarted for lack of time (nothing failed).
        metrics.add_metric(name="FilesRetried", unit=MetricUnit.Count, value=1)
        reason = f"{type(exc).__name__}: {exc}"
        limit = _LIMITS.get(type(exc))
        if limit:
            metric, advice = limit
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
            reason += f"; {advice}"
        try:
            if attempt >= settings.max_receive_count:
                record_failure(
                    store, ref, f"gave up after {attempt} attempts: {reason}", attempt, _record_metrics
                )
            elif access_denied(exc):  # failed until the role allows it; retried meanwhile
                record_failure(store, ref, reason, attempt, _record_metrics)
            else:
                store.note_retry(ref, utcnow(), reason, attempt)
        except Exception:
            logger.exception("could not record the failure on the metadata item")
        logger.exception("transient failure, the message will be retried")
        raise
    logger.info("file %s", result["status"], extra={"outcome": result})
    if result.get("catalog_error"):
        logger.warning("the Glue table could not follow this file: %s", result["catalog_error"])
    return result


# A file that met a limit of the function: its metric, and the setting that lifts it.
_LIMITS: dict[type[Exception], tuple[str, str]] = {
    OutOfTime: (
        "FilesOutOfTime",
        "the function's timeout is too short for this file: raise "
        "functions.processor.timeout_seconds, or memory_mb (which adds CPU)",
    ),
    OutOfMemory: (
        "FilesOutOfMemory",
        "the function's memory is too small for this file: raise functions.processor.memory_mb",
    ),
    OutOfScratchSpace: (
        "FilesOutOfScratchSpace",
        "the function's scratch space is too small for this file: raise "
        "functions.processor.ephemeral_storage_mb",
    ),
}


def _retry_now(record: ObjectCreatedRecord) -> None:
    try:
        queues.retry_now(record.eventSourceARN, record.receiptHandle)
    except ClientError:
        logger.exception(
            "could not make the message visible again at once: it returns after the visibility timeout"
        )


def _ignored_because(ref: ObjectRef) -> str | None:
    """Why the processor skips a key that is not a folder marker, if it does: the rule
    routes every key under the raw prefix (EventBridge refuses a rule with a wildcard per
    suffix), hidden files and keys without one of ``RAW_SUFFIXES`` included."""
    hidden = hidden_part(ref.key, settings.raw_prefix)
    if hidden:
        return f"a hidden file ({hidden!r}), skipped as Spark and Athena skip them"
    if not has_raw_suffix(ref.key, settings.raw_suffixes):
        name = ref.key.rsplit("/", 1)[-1] or ref.key
        reason = (
            f"the file name {name!r} ends in none of the raw suffixes ({', '.join(settings.raw_suffixes)})"
        )
        if ref.key != ref.key.rstrip() and has_raw_suffix(ref.key.rstrip(), settings.raw_suffixes):
            # "sales.csv " (a name pasted with a blank) looked like a suffix the stack takes
            reason += ": it ends in whitespace, which is part of the S3 key; upload it without"
        return reason
    return None


def _takes(ref: ObjectRef) -> bool:
    """Whether ``ref`` is a file to process (``_ignored_because``; folder markers never)."""
    return not ref.is_folder_marker and _ignored_because(ref) is None


def _mark_batch_received(event: dict[str, Any]) -> None:
    """Every file of the batch is visible as ``received`` while earlier ones are processed.
    Only a convenience: a table that refuses the mark (throttling, an outage) fails no
    file. Raised from here it failed the whole invocation: every file of the batch came
    back after the visibility timeout, none with its reason recorded, and no log line
    named a file. Each file's own attempt now meets the fault, and is retried and
    recorded as any transient failure is."""
    now = utcnow()
    for raw in event.get("Records", []):
        try:
            ref = ObjectRef.from_event(ObjectCreatedRecord.model_validate(raw).body)
        except (ValueError, TypeError, json.JSONDecodeError):
            continue  # the batch processor reports the malformed record
        if not _takes(ref):
            continue
        try:
            store.mark_received(ref, now)
        except Exception:
            logger.warning(
                "could not mark the batch's files received: each is processed (or fails) on its own",
                extra={"object_key": ref.key, "version": ref.version},
                exc_info=True,
            )
            return  # the rest would meet the same fault, one retried call after another


# clear_state: a record's keys (object_key, version, attempt) and correlation id never
# label the lines of a later invocation
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    _handled.start()
    _mark_batch_received(event)
    response = process_partial_response(
        event=event,
        record_handler=partial(record_handler, budget=TimeBudget.of(context)),
        processor=batch,
        context=context,
    )
    _report_malformed(event, response)
    return response


def _report_malformed(event: dict[str, Any], response: PartialItemFailureResponse) -> None:
    """Failures the record handler never saw: messages that are not S3 "Object Created"
    events (the parser model refused them), which nothing else logs. No file is named in
    them, so no metadata item records them: like a poison file they reach the DLQ after
    their receives (processing-dlq-depth), and this line says why."""
    for record in _handled.malformed(event, response):
        logger.error(
            "malformed message: not an S3 Object Created event",
            extra={"message_id": record.message_id, "attempt": record.attempt, "fate": record.fate()},
        )
