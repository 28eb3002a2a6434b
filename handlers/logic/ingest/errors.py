"""Request errors: each is one HTTP status and one message for the client.

The handler turns any ``ApiError`` into ``{"error": message}`` (plus ``details`` when
given) with ``status``. Messages say what was wrong and quote the client's own values
(``shown``), which may be anything the client misplaced (an API key in X-Tenant-ID, an
address in a log_id): fine to send back to that client, not to log. The log gets
``log_reason``, with quoted values elided.
"""

from __future__ import annotations

import re
from typing import Any

# a repr() of a str; its opening quote follows no letter, as an apostrophe does ("tenant's")
_QUOTED = re.compile(r"(?<![A-Za-z])(?:'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*")')


class ApiError(Exception):
    status = 400

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}

    @property
    def log_reason(self) -> str:
        """``message`` with every quoted value elided: safe for the function's log."""
        return _QUOTED.sub("'…'", self.message)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class ServiceUnavailable(ApiError):
    """A dependency (queue, table) failed; the request can be retried as it is."""

    status = 503


def shown(value: str, limit: int = 64) -> str:
    """A client-supplied value quoted for an error message, cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
