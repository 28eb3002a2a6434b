"""Shared boto3 clients, created once per process (Lambda execution environment)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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
