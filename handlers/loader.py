"""Loader Lambda: SQS batches of "File Processed" events (via EventBridge) -> PostgreSQL.

Each record loads one file in one transaction (handlers.dal.warehouse). A record that
fails (database down, a message that is no "File Processed" event, missing Parquet) is
reported in ``batchItemFailures``: only that message is retried, and after
``MAX_RECEIVE_COUNT`` receives it lands in the load DLQ, its metadata item marked
``load_status=failed`` with the reason. A load no retry can change (``LoadRejected``: a
limit of PostgreSQL, a value or a widening its table refuses, an event for another bucket)
is recorded ``load_status=rejected`` at once and acknowledged: no retry, no DLQ message.
Processing never waits for the database: loading has its own queue.

Loads keep within the invocation's time as the processor's files do
(``handlers/logic/time_budget.py``): a load, from the Parquet's download on, must end
before the time kept back (a fifth of the invocation, at most 10 s: room to roll back and
record the failure), and is rolled back there (``LoadTimedOut``, retried); a record there
is too little time left to start is handed back untouched, not counted as a failed load,
so a slow first file never cuts the function off with the rest of its batch in the middle
of a transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.dal.aws import access_denied
from handlers.dal.load_status import LoadStatusStore
from handlers.dal.secrets import db_credentials
from handlers.dal.warehouse import Connections, LoadRejected, Warehouse
from handlers.logic.load_file import load_file
from handlers.logic.malformed import HandledRecords
from handlers.logic.time_budget import TimeBudget
from handlers.models.loader import FileProcessedRecord, LoaderSettings

settings = LoaderSettings.from_env()
logger = Logger(service="loader")
tracer = Tracer(service="loader")
metrics = Metrics(namespace="headrace", service="loader")
metrics.set_default_dimensions(stack=settings.stack)  # this stack's alarms select by it
batch = BatchProcessor(
    event_type=EventType.SQS, model=FileProcessedRecord, raise_on_entire_batch_failure=False
)
status = LoadStatusStore(settings.metadata_table)
warehouse = Warehouse(
    Connections(lambda refresh: db_credentials(settings.db_secret_arn, refresh=refresh)),
    settings.warehouse_schema,
)
_handled = HandledRecords(settings.max_receive_count)  # ids that reached the record handler


def utcnow() -> datetime:
    return datetime.now(UTC)


@tracer.capture_method
def record_handler(record: FileProcessedRecord, budget: TimeBudget | None = None) -> dict[str, Any]:
    _handled.seen(record.messageId)
    event = record.body.detail
    attempt = int(record.attributes.ApproximateReceiveCount)
    logger.set_correlation_id(record.body.id)
    logger.append_keys(object_key=event.object_key, version=event.version, attempt=attempt)
    deadline = budget.deadline() if budget else None
    if budget and deadline is None:
        # Not an attempt at the load, though SQS counts the receive: nothing is recorded
        # unless this was its last receive (the message goes to the load DLQ next).
        not_started = budget.not_started()
        if attempt >= settings.max_receive_count:
            # not the cause: what the attempts before this one met, if any, is
            earlier = status.load_error(event.object_key, event.version)
            status.mark_failed(
                event.object_key,
                event.version,
                utcnow(),
                f"gave up after {attempt} receives: {not_started}"
                + (f"; an earlier attempt failed with: {earlier}" if earlier else ""),
                attempt,
            )
        logger.info("too little time left in this invocation to start the load: handed back to the queue")
        raise not_started
    try:
        outcome = load_file(
            event,
            settings,
            warehouse,
            status.uploaded_at,
            superseded_by=status.superseded_by,
            deadline=deadline,
        )
    except LoadRejected as exc:
        try:
            return _rejected(record, exc, attempt)
        except Exception:
            # the load was rolled back: the retry is rejected again, and recorded then
            metrics.add_metric(name="LoadFailures", unit=MetricUnit.Count, value=1)
            logger.exception("could not record the rejected load: the message will be retried")
            raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        metrics.add_metric(name="LoadFailures", unit=MetricUnit.Count, value=1)
        try:
            if attempt >= settings.max_receive_count:
                status.mark_failed(
                    event.object_key,
                    event.version,
                    utcnow(),
                    f"gave up after {attempt} attempts: {reason}",
                    attempt,
                )
            elif access_denied(exc):  # failed until the role allows it; retried meanwhile
                status.mark_failed(event.object_key, event.version, utcnow(), reason, attempt)
            else:
                status.note_retry(event.object_key, event.version, reason, attempt)
        except Exception:
            logger.exception("could not record the load failure on the metadata item")
        logger.exception(
            "load failed, the message will be retried"
            if attempt < settings.max_receive_count
            else "load failed for the last time: the message goes to the load DLQ"
        )
        raise
    if outcome.status == "superseded":
        status.mark_superseded(event.object_key, event.version, utcnow(), outcome.current_version)
        logger.info(
            "a newer version of the object is already loaded; skipped", extra={"outcome": outcome.__dict__}
        )
    else:
        status.mark_loaded(event.object_key, event.version, utcnow(), outcome.table, outcome.rows)
        metrics.add_metric(name="FilesLoaded", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="RowsLoaded", unit=MetricUnit.Count, value=outcome.rows)
        logger.info("file loaded", extra={"outcome": outcome.__dict__})
        if outcome.nuls_removed:
            logger.warning(
                "NUL characters removed from text values (PostgreSQL text cannot hold them); "
                "_files.nuls_removed counts them by column",
                extra={"nuls_removed": outcome.nuls_removed},
            )
    return outcome.__dict__


def _rejected(record: FileProcessedRecord, exc: LoadRejected, attempt: int) -> dict[str, Any]:
    """A load no retry can change: recorded ``rejected`` with the reason, and acknowledged."""
    event = record.body.detail
    reason = f"LoadRejected: {exc}"
    status.mark_rejected(event.object_key, event.version, utcnow(), reason, attempt)
    metrics.add_metric(name="LoadsRejected", unit=MetricUnit.Count, value=1)
    logger.error(
        "load rejected: PostgreSQL cannot take this file as it is; not retried (no DLQ message). "
        "Fix the cause, then headrace replay --force the key",
        extra={"reason": reason},
    )
    return {"status": "rejected", "error": reason}


# clear_state: a record's keys (object_key, version, attempt) and correlation id never
# label the lines of a later invocation
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    warehouse.connections.begin_invocation()
    _handled.start()
    response = process_partial_response(
        event=event,
        record_handler=partial(record_handler, budget=TimeBudget.of(context)),
        processor=batch,
        context=context,
    )
    _report_malformed(event, response)
    return response


def _report_malformed(event: dict[str, Any], response: PartialItemFailureResponse) -> None:
    """Failures the record handler never saw: messages that are not "File Processed"
    events (the parser model refused them), which nothing else logs or counts. Each
    attempt is a failed load (``LoadFailures``, as the loader-failures alarm reads); no
    metadata item names them, so this line says why they reach the load DLQ."""
    for record in _handled.malformed(event, response):
        metrics.add_metric(name="LoadFailures", unit=MetricUnit.Count, value=1)
        logger.error(
            "malformed message: not a File Processed event",
            extra={"message_id": record.message_id, "attempt": record.attempt, "fate": record.fate()},
        )
