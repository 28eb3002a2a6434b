"""The processing core: one raw file -> typed, PII-redacted Parquet + a summary.

Pure logic: no AWS. The processor Lambda and ``headrace inspect`` both call ``process_file``.
"""

from .engine import process_file
from .errors import UnprocessableFile
from .options import ProcessingOptions
from .summary import Summary

__all__ = ["ProcessingOptions", "Summary", "UnprocessableFile", "process_file"]
