"""Where processed data goes (README "Processed data layout", a public contract).

    parquet/dataset=<dataset>/ingest_date=<YYYY-MM-DD>/<stem>--<id>.parquet
    summaries/dataset=<dataset>/ingest_date=<YYYY-MM-DD>/<stem>--<id>.json

``dataset`` is the first folder under the raw prefix (``incoming/sales/2025-01.csv`` ->
``sales``), or the file's stem for files directly under it (``incoming/sales.csv`` ->
``sales``), reduced to ``[a-z0-9_]`` so it is a valid Glue/Athena table and PostgreSQL
identifier: accents are dropped (``Über Sales`` -> ``uber_sales``), and a name with letters
that have no ASCII form (``東京``), or with nothing left, gets a hash of the folder name, so
two such folders never merge into one dataset. ``<id>`` is derived from the raw key and
version, so processing the same object version again overwrites the same keys: every write
is idempotent.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^a-z0-9_]+")
# Longer folder names are cut and given a hash: the dataset appears twice in a processed
# key (S3 allows 1,024 bytes) and names a Glue table (255) and a PostgreSQL table (63 bytes,
# hashed again by the loader).
MAX_DATASET_CHARS = 100
_KEEP = re.compile(r"[^A-Za-z0-9._-]+")
# Everything the pipeline keeps in the processed bucket is under these two prefixes: the
# functions' grants on the bucket (components/pipeline.py) and the query policy
# (components/catalog.py) cover them and nothing else.
PARQUET_PREFIX = "parquet/"
SUMMARIES_PREFIX = "summaries/"
PROCESSED_PREFIXES = (PARQUET_PREFIX, SUMMARIES_PREFIX)
# The Hive-style partition key in every processed key. Readers that discover partitions from
# the path (pyarrow and pandas, Spark, DuckDB's hive_partitioning, Athena's table) add it as
# a column, so no Parquet file may hold a column of that name (the processing renames a
# file's own to ``ingest_date_source``): pyarrow and pandas refused the whole dataset over
# one such file, and the others silently showed the partition's value instead of the file's.
PARTITION_KEY = "ingest_date"


def dataset_for(key: str, raw_prefix: str) -> str:
    relative = key[len(raw_prefix) :] if raw_prefix and key.startswith(raw_prefix) else key
    parts = [p for p in relative.split("/") if p]
    folder = parts[0] if len(parts) > 1 else _stem(parts[-1] if parts else "data")
    decomposed = unicodedata.normalize("NFKD", folder)  # "Ü" -> "U" and a combining mark
    name = _UNSAFE.sub("_", decomposed.encode("ascii", "ignore").decode().lower()).strip("_")
    lost = not name or any(ch.isalnum() and not ch.isascii() for ch in decomposed)
    if lost or len(name) > MAX_DATASET_CHARS:
        # of the decomposed, lower-case name: the same folder written in NFC (most systems)
        # or NFD (macOS) and in either case is one dataset, as the ASCII names are
        digest = hashlib.sha256(decomposed.lower().encode()).hexdigest()[:8]
        name = f"{name[: MAX_DATASET_CHARS - 9] or 'd'}_{digest}"
    return f"d_{name}" if name[0].isdigit() else name


# A rotated log's last suffix: app.log.1 (logrotate, Python's RotatingFileHandler),
# app.log.2026-12-06 or app.log.2026-12-06_14-00 (TimedRotatingFileHandler). logrotate's
# dateext (app.log-20261206) keeps the file's own suffix in one: see formats.extension.
_ROTATION_SUFFIX = re.compile(r"\.\d[\d_-]*")
_ROTATED = (".log", ".txt")


def hidden_part(key: str, raw_prefix: str = "") -> str | None:
    """The part of ``key`` below ``raw_prefix`` that makes it a hidden file, which the
    processor skips as Spark, Hive and Athena do: a file or folder name starting with ``.``
    (macOS's ``._sales.csv`` resource forks and ``.DS_Store``, an editor's
    ``.sales.csv.swp``) or a ``__MACOSX`` folder (a zip made on a Mac, extracted
    elsewhere); ``None`` for any other key. The ``.`` and ``..`` segments are folder names
    like any other. The prefix itself never hides a key: a stack whose ``raw_prefix`` is
    ``landing/.raw/`` processes the files under it."""
    if raw_prefix and key.startswith(raw_prefix):
        key = key[len(raw_prefix) :]
    for part in key.split("/"):
        if part == "__MACOSX" or (part.startswith(".") and part not in (".", "..")):
            return part
    return None


def has_raw_suffix(key: str, suffixes: Sequence[str]) -> bool:
    """Whether ``key`` ends in one of ``suffixes``, in any case (``.csv`` takes
    ``EXPORT.CSV``, as the format detection reads it; none: any key). A ``*`` in a suffix
    matches any characters but ``/`` (``.log.*``: ``app.log.1``, not ``x.log.d/readme.md``)."""
    return not suffixes or any(_suffix_regex(s).search(key) for s in suffixes)


@lru_cache(maxsize=64)
def _suffix_regex(suffix: str) -> re.Pattern[str]:
    # Case-insensitive: a Windows or mainframe export named REPORT.CSV is the same data as
    # report.csv, and a key the filter skips is acknowledged with nothing recorded at all.
    return re.compile("[^/]*".join(re.escape(part) for part in suffix.split("*")) + r"\Z", re.IGNORECASE)


def without_rotation(name: str) -> str:
    """``name`` without the number or date of a rotated log (``app.log.1``,
    ``app.log.2026.12.06`` -> ``app.log``);
    any other name as it is (``data.1``, ``release-1.2.3``, ``sales.csv.1``)."""
    suffixes = PurePosixPath(name).suffixes
    kept = len(suffixes)
    # a date may be dotted (app.log.2026.12.06): every suffix after .log is part of it
    while kept > 1 and _ROTATION_SUFFIX.fullmatch(suffixes[kept - 1]):
        kept -= 1
    if kept < len(suffixes) and suffixes[kept - 1].lower() in _ROTATED:
        return name[: -len("".join(suffixes[kept:]))]
    return name


def _stem(file_name: str) -> str:
    name = without_rotation(file_name.removesuffix(".gz"))
    return PurePosixPath(name).stem or name


@dataclass(frozen=True)
class ProcessedKeys:
    dataset: str
    ingest_date: str
    parquet: str
    summary: str


def processed_keys(key: str, version: str, raw_prefix: str, uploaded_at: datetime) -> ProcessedKeys:
    dataset = dataset_for(key, raw_prefix)
    day = uploaded_at.strftime("%Y-%m-%d")
    stem = _KEEP.sub("_", _stem(PurePosixPath(key).name)).strip("_.") or "file"
    ident = hashlib.sha256(f"{key}\0{version}".encode()).hexdigest()[:16]
    partition = f"dataset={dataset}/{PARTITION_KEY}={day}"
    name = f"{stem[:80]}--{ident}"
    return ProcessedKeys(
        dataset=dataset,
        ingest_date=day,
        parquet=f"{PARQUET_PREFIX}{partition}/{name}.parquet",
        summary=f"{SUMMARIES_PREFIX}{partition}/{name}.json",
    )
