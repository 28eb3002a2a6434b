"""Shared boto3 clients, created once per process (Lambda execution environment)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

T = TypeVar("T")

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=60)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


# Reading a raw object's body: a connection that stalls is given up after 5 s, so the
# processor's deadline (checked between chunks) holds within the time it keeps back.
_DOWNLOAD_CONFIG = _CONFIG.merge(Config(read_timeout=5))


@cache
def download_client() -> Any:
    """An S3 client for streaming downloads (a short read timeout)."""
    return boto3.client("s3", config=_DOWNLOAD_CONFIG)


@cache
def table(name: str) -> Any:
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)


# ------------------------------------------------------------------------- the ingest API
# The ingest API must answer within its own timeout (10 s by default): when SQS or DynamoDB
# stalls, its caller gets a 503 it can retry, not API Gateway's 500 after the function was
# killed (which leaves the caller unable to tell what was enqueued). So its clients give up
# on an attempt quickly and do not retry by themselves; ``Deadline.call`` makes at most
# API_ATTEMPTS attempts, each only when it can end, timed out at worst, with time left to
# answer. (A stalled attempt ends after connect + read timeout at most when the endpoint's
# first address answers the connect: a read that stalls, the usual case. The connect
# timeout applies to each address the name resolves to, one after another, and resolving
# the name is not bounded at all: a network that drops every connect can outlast it.)
API_CONNECT_SECONDS = 1
API_READ_SECONDS = 2
API_ATTEMPTS = 2
API_ATTEMPT_MS = (API_CONNECT_SECONDS + API_READ_SECONDS) * 1000
ANSWER_RESERVE_MS = 500  # kept back to build and send the answer (and the 503 is the answer)
_RETRY_PAUSE_SECONDS = 0.1  # at most, before the second attempt; within the reserve
_API_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=API_CONNECT_SECONDS,
    read_timeout=API_READ_SECONDS,
)


@cache
def api_client(service: str) -> Any:
    """A client for the ingest API's calls: short timeouts, no retries of its own (use it
    through ``Deadline.call``)."""
    return boto3.client(service, config=_API_CONFIG)  # type: ignore[call-overload]


@cache
def api_table(name: str) -> Any:
    return boto3.resource("dynamodb", config=_API_CONFIG).Table(name)


class OutOfTime(BotoCoreError):
    """An AWS call not attempted: the invocation could time out before it ends. A
    BotoCoreError, so callers treat it as the dependency being unavailable (503)."""

    fmt = "{what} not attempted: {remaining_ms} ms of the invocation remain, an attempt needs {needed_ms}"


def transient(exc: BaseException) -> bool:
    """Whether another attempt of a failed call may succeed (throttling, a 5xx, a timeout
    or a connection that failed)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_CODES or int(status) >= 500
    return isinstance(exc, BotoConnectionError | HTTPClientError)


class Deadline:
    """The time an invocation has left, for the AWS calls it makes before answering.

    ``remaining_ms`` is the Lambda context's ``get_remaining_time_in_millis``. An attempt
    is made only when at least API_ATTEMPT_MS + ``reserve_ms`` remain, so the invocation
    always keeps ``reserve_ms`` to answer, whatever the dependency does."""

    def __init__(self, remaining_ms: Callable[[], int], reserve_ms: int = ANSWER_RESERVE_MS):
        self.remaining_ms = remaining_ms
        self.reserve_ms = reserve_ms

    def call(self, what: str, operation: Callable[[], T]) -> T:
        """``operation()``, one call made with ``api_client`` or ``api_table``: attempted
        up to API_ATTEMPTS times while it fails transiently and time allows. Raises the
        error of the last attempt, or ``OutOfTime`` when there was no time for any."""
        failed: ClientError | BotoCoreError | None = None
        for _ in range(API_ATTEMPTS):
            if failed is not None:
                time.sleep(random.uniform(0, _RETRY_PAUSE_SECONDS))
            remaining, needed = self.remaining_ms(), API_ATTEMPT_MS + self.reserve_ms
            if remaining < needed:
                raise failed or OutOfTime(what=what, remaining_ms=remaining, needed_ms=needed)
            try:
                return operation()
            except (ClientError, BotoCoreError) as exc:
                if not transient(exc):
                    raise
                failed = exc
        assert failed is not None
        raise failed


TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalServerError",
        "RequestTimeout",
    }
)

# A call the function's role does not allow: a deployment problem, not bad data. On AWS it
# can also be momentary (a new role's policies take seconds to propagate), so it is retried.
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def access_denied(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it wraps (boto3's transfer errors do), is an AWS
    authorization failure."""
    seen: BaseException | None = exc
    for _ in range(10):  # a bounded walk down the exception chain
        if seen is None:
            return False
        if (
            isinstance(seen, ClientError)
            and seen.response.get("Error", {}).get("Code") in ACCESS_DENIED_CODES
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
