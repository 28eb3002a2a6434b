"""Ingest worker Lambda: SQS batches of ingest messages -> redacted tenant log items.

Records are independent. A record that fails (a table or KMS error, a malformed message)
is reported in ``batchItemFailures`` and counted (``LogsFailed``), every time, so only it
is retried; after the queue's ``maxReceiveCount`` receives SQS moves it to the DLQ. A
redelivered or replayed ``(tenant_id, log_id)`` is acknowledged without a second write
(``LogsDuplicate``; with another text than the stored one, ``LogsConflict`` and a warning:
the client reused a log id).
Neither the original text nor message bodies are ever logged. A record there is too little
of the invocation's time left to start is reported failed untouched (``TimeBudget``), so a
slow batch never reaches the timeout, which would return every record of it to the queue.
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

from handlers.dal.tenant_logs import TenantLogStore
from handlers.logic.faults import maybe_crash
from handlers.logic.ingest.worker import store_message
from handlers.logic.malformed import HandledRecords
from handlers.logic.time_budget import TimeBudget
from handlers.models.ingest import IngestRecord
from handlers.models.ingest_worker import IngestWorkerSettings

settings = IngestWorkerSettings.from_env()
logger = Logger(service="ingest-worker")
tracer = Tracer(service="ingest-worker")
metrics = Metrics(namespace="headrace", service="ingest-worker")
metrics.set_default_dimensions(stack=settings.stack)  # this stack's alarms select by it
batch = BatchProcessor(event_type=EventType.SQS, model=IngestRecord, raise_on_entire_batch_failure=False)
rules = settings.pii().rules
store = TenantLogStore(settings.tenant_logs_table, settings.originals_kms_key_arn)
_RECORD_KEYS = ("tenant_id", "log_id", "attempt", "message_id")
_handled = HandledRecords(settings.max_receive_count)  # ids that reached the record handler


@tracer.capture_method(capture_response=False)
def record_handler(record: IngestRecord) -> dict[str, Any]:
    message = record.body
    attempt = int(record.attributes.ApproximateReceiveCount)
    logger.append_keys(
        tenant_id=message.tenant_id, log_id=message.log_id, attempt=attempt, message_id=record.messageId
    )
    maybe_crash(settings.crash_rate, attempt, f"{message.tenant_id}/{message.log_id}")
    try:
        outcome = store_message(
            message,
            rules,
            store,
            now=datetime.now(UTC),
            ttl_days=settings.log_ttl_days,
            keep_original=settings.keep_original,
        )
    except Exception as exc:
        # each failed attempt: the ingest-worker-failures alarm pages before the DLQ fills
        metrics.add_metric(name="LogsFailed", unit=MetricUnit.Count, value=1)
        if attempt >= settings.max_receive_count:
            logger.error(
                "giving up on this record: it moves to the DLQ",
                extra={"reason": type(exc).__name__},
                exc_info=True,
            )
        else:
            logger.warning(
                "record failed; it will be retried", extra={"reason": type(exc).__name__}, exc_info=True
            )
        raise
    finally:
        logger.remove_keys(list(_RECORD_KEYS))
    metric = {"stored": "LogsStored", "duplicate": "LogsDuplicate", "conflict": "LogsConflict"}
    metrics.add_metric(name=metric[outcome.status], unit=MetricUnit.Count, value=1)
    ids = {"tenant_id": message.tenant_id, "log_id": message.log_id}
    if outcome.status == "conflict":
        logger.warning(
            "log_id reused for a different text: the stored record is kept, this one is dropped", extra=ids
        )
    else:
        logger.info("log %s", outcome.status, extra={**ids, "redactions": outcome.redactions})
    return {"tenant_id": message.tenant_id, "log_id": message.log_id, "status": outcome.status}


def _report_malformed(event: dict[str, Any], response: PartialItemFailureResponse) -> None:
    """Failures the record handler never saw are messages that are not ingest messages
    (the parser model refused them). Log them without their content."""
    for record in _handled.malformed(event, response):
        metrics.add_metric(name="LogsFailed", unit=MetricUnit.Count, value=1)
        logger.error(
            "malformed ingest message",
            extra={"message_id": record.message_id, "attempt": record.attempt, "fate": record.fate()},
        )


def _handle(record: IngestRecord, budget: TimeBudget) -> dict[str, Any]:
    _handled.seen(record.messageId)
    if budget.deadline() is None:
        # SQS counts the receive: a record that never gets time reaches the DLQ like any other
        logger.warning(
            "too little time left in this invocation to start the record: it will be retried",
            extra={"message_id": record.messageId},
        )
        raise budget.not_started()
    return record_handler(record)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    _handled.start()
    response = process_partial_response(
        event=event,
        record_handler=partial(_handle, budget=TimeBudget.of(context)),
        processor=batch,
        context=context,
    )
    _report_malformed(event, response)
    return response
