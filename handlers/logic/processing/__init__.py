"""The processing core: one raw file -> typed, PII-redacted Parquet + a summary.

Pure logic: no AWS. The processor Lambda and ``headrace inspect`` both call ``process_file``.
Attributes load lazily, so ``handlers.logic.processing.pii`` (used by the ingest worker)
does not pull in DuckDB.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import process_file
    from .errors import OutOfMemory, OutOfScratchSpace, OutOfTime, UnprocessableFile
    from .options import ProcessingOptions
    from .summary import Summary

_EXPORTS = {
    "process_file": ".engine",
    "OutOfMemory": ".errors",
    "OutOfScratchSpace": ".errors",
    "OutOfTime": ".errors",
    "UnprocessableFile": ".errors",
    "ProcessingOptions": ".options",
    "Summary": ".summary",
}
__all__ = [
    "OutOfMemory",
    "OutOfScratchSpace",
    "OutOfTime",
    "ProcessingOptions",
    "Summary",
    "UnprocessableFile",
    "process_file",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
