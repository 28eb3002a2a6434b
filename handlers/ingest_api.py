"""Ingest API Lambda (HTTP API, payload format 2.0): ``POST /ingest`` and ``GET /logs``.

Every request is authenticated by its ``x-api-key``; the tenant comes from the key, never
from the request. Bad input gets a 4xx ``{"error": ...}`` and nothing is enqueued; the
only 5xx it answers is 503, when the queue (or a table) is unavailable or too slow and the
request can be retried as it is. Every AWS call is bounded by the invocation's remaining
time (``Deadline``), so a stalled dependency is answered with that 503 before the
function's timeout. Neither API keys nor log text are ever logged (``log_event=False`` also
overrides ``POWERTOOLS_LOGGER_LOG_EVENT``, since the event holds both).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from handlers.dal import ingest_queue
from handlers.dal.aws import Deadline
from handlers.dal.tenant_logs import TenantLogStore
from handlers.dal.tenants import TenantKeyStore
from handlers.logic.ingest.auth import Authenticator, misplaced_key
from handlers.logic.ingest.errors import ApiError, ServiceUnavailable, shown
from handlers.logic.ingest.listing import page_body, parse_page
from handlers.logic.ingest.request import HttpInput, Limits, parse_ingest
from handlers.models.ingest import IngestApiSettings, TenantKey

settings = IngestApiSettings.from_env()
logger = Logger(service="ingest")
tracer = Tracer(service="ingest")
# debug=False: POWERTOOLS_DEV would otherwise make the resolver print every event (keys, text)
# to stdout, past log_event=False, and answer unexpected errors with their traceback.
app = APIGatewayHttpResolver(debug=False)
keys = TenantKeyStore(settings.tenant_keys_table)
logs = TenantLogStore(settings.tenant_logs_table)
limits = Limits(max_body_bytes=settings.max_body_bytes, max_batch_records=settings.max_batch_records)

# Method(s) of each route, for 405 answers (API Gateway may send anything to $default).
ROUTES: dict[str, tuple[str, ...]] = {"/ingest": ("POST",), "/logs": ("GET",)}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    # Answers name a tenant's ids and text: no cache along the way may keep them.
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _deadline() -> Deadline:
    """The current invocation's time, for its AWS calls."""
    return Deadline(app.lambda_context.get_remaining_time_in_millis)


# The key table is read (on a cache miss) within the invocation that needs the key.
authenticator = Authenticator(lambda key_hash: keys.lookup(key_hash, _deadline()))


def _header(name: str) -> str | None:
    """A request header without the whitespace around its value, which is not part of it
    (RFC 9110): API Gateway strips it, and so does this, whatever sent the event."""
    value = app.current_event.headers.get(name)
    return None if value is None else value.strip(" \t")


def _caller() -> TenantKey:
    api_key = _header("x-api-key")
    # without the header, where else the client may have put its key, for the 401
    misplaced = (
        ""
        if api_key
        else misplaced_key(app.current_event.query_string_parameters or {}, _header("authorization"))
    )
    try:
        caller = authenticator.authenticate(api_key, misplaced)
    except (ClientError, BotoCoreError):
        logger.exception("the tenant keys table is unavailable")
        raise ServiceUnavailable("authentication is temporarily unavailable; retry the request") from None
    logger.append_keys(tenant_id=caller.tenant_id, key_id=caller.key_id)
    return caller


# Routes are not wrapped in tracer.capture_method: it logs every exception it sees at
# ERROR level with a traceback, and a 4xx is an ordinary answer, not an error.
@app.post("/ingest")
def ingest() -> Response:
    caller = _caller()
    event = app.current_event
    accepted = parse_ingest(
        HttpInput(
            content_type=_header("content-type"),
            body=event.body,
            is_base64_encoded=bool(event.is_base64_encoded),
            tenant_header=_header("x-tenant-id"),
            log_id_header=_header("x-log-id"),
            content_encoding=_header("content-encoding"),
            query=event.query_string_parameters or {},
        ),
        caller.tenant_id,
        limits,
        received_at=datetime.now(UTC),
    )
    sent = ingest_queue.send(settings.ingest_queue_url, accepted.messages, _deadline())
    if sent.failed:
        logger.error(
            "records not enqueued",
            extra={"enqueued": len(sent.enqueued), "failed": len(sent.failed), "errors": sent.errors},
        )
        raise ServiceUnavailable(
            f"the ingest queue is unavailable: {len(sent.failed)} of {len(accepted.messages)} records were "
            "not confirmed enqueued. Retry them with the same log_id; records sent twice are stored once.",
            details={
                "tenant_id": caller.tenant_id,
                "enqueued_log_ids": sent.enqueued,
                "failed_log_ids": sent.failed,
            },
        )
    logger.info("records enqueued", extra={"records": len(accepted.messages)})
    return _json(202, accepted.response(caller.tenant_id))


@app.get("/logs")
def list_logs() -> Response:
    caller = _caller()
    event = app.current_event
    page = parse_page(event.query_string_parameters, caller.tenant_id, _header("x-tenant-id"))
    try:
        items, last_key = logs.page(caller.tenant_id, page.limit, page.start_key, _deadline())
    except (ClientError, BotoCoreError):
        logger.exception("the tenant logs table is unavailable")
        raise ServiceUnavailable("the log store is temporarily unavailable; retry the request") from None
    return _json(200, page_body(items, last_key))


@app.exception_handler(ApiError)
def _refused(error: ApiError) -> Response:
    log = logger.warning if error.status >= 500 else logger.info
    log("request refused", extra={"status": error.status, "reason": error.log_reason})
    return _json(error.status, error.body())


@app.not_found
def _no_route(_: NotFoundError) -> Response:
    method = app.current_event.http_method.upper()
    path = app.current_event.path
    allowed = ROUTES.get(path)
    if allowed:
        return _json(
            405,
            {"error": f"method {shown(method)} is not allowed on {path}; use {', '.join(allowed)}"},
            headers={"Allow": ", ".join(allowed)},
        )
    return _json(404, {"error": f"no route {shown(path)}: this API serves POST /ingest and GET /logs"})


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return _json(500, {"error": "internal error"})


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
