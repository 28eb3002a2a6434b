"""``headrace query SQL --outputs PATH``: SQL over the processed bucket of any stack.

Every dataset is a table named like its Glue table (the dataset name), with the file's
columns, ``_rescued_data`` and the partition column ``ingest_date`` (a string, YYYY-MM-DD).

Engines (``--engine auto`` picks):
  athena  the stack's Athena workgroup and Glue database (AWS stacks: the outputs have
          ``athena_workgroup`` and no ``aws_endpoint_url``);
  duckdb  DuckDB on this machine, reading the Parquet through the stack's S3 API (the
          embedded runtime, LocalStack, or any stack with --engine duckdb). A filter on
          ``ingest_date`` opens only that partition's files.

The DuckDB engine runs queries only (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN), over the
stack's tables only: no file or URL of the SQL's own, no extension, no SET.

One statistics line goes to stderr (engine, files or bytes scanned, time); --explain also
lists every Parquet file the DuckDB engine opened. Exit status: 0 done, 1 the query failed
(bad SQL, unknown table, scan limit, not a query), 2 the stack cannot be read (a file
deleted while the query ran, too: run it again), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.logic.catalog import GLUE_TYPE_OF, PARTITION_COLUMN, Column, file_columns, merge_columns
from handlers.logic.layout import PARQUET_PREFIX, SUMMARIES_PREFIX
from handlers.logic.processing.sqltext import ident
from handlers.logic.processing.summary import columns_beyond_float, columns_without_values
from headrace.outputs import DocstringHelp, OutputsError, StackOutputs, add_outputs_option


class QueryError(Exception):
    """The query cannot run or failed; ``str()`` is the message for the user."""


class StackError(Exception):
    """The stack cannot be reached or read."""


@dataclass
class QueryStats:
    engine: str
    seconds: float = 0.0
    bytes_scanned: int | None = None
    files_scanned: list[str] = field(default_factory=list)  # DuckDB: s3://bucket/key of each file opened
    files_total: int | None = None  # DuckDB: Parquet files of the tables the query names
    query_id: str | None = None  # Athena

    def line(self) -> str:
        took = f"in {self.seconds:.2f} s"
        if self.engine == "athena":
            scanned = _size(self.bytes_scanned or 0)
            return f"athena: {scanned} scanned {took} (query {self.query_id})"
        total = self.files_total or 0
        return (
            f"duckdb: scanned {len(self.files_scanned)} of {total} Parquet file{'s' if total != 1 else ''} "
            f"({_size(self.bytes_scanned or 0)}) {took}"
        )


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    stats: QueryStats


# ---------------------------------------------------------------------- engine choice
ENGINES = ("auto", "athena", "duckdb")


def endpoint_of(outputs: StackOutputs) -> str | None:
    """The S3 endpoint other than AWS: the embedded runtime's, or the one boto3 would take
    from the environment (LocalStack: ``AWS_ENDPOINT_URL``)."""
    return (
        outputs.aws_endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def choose_engine(outputs: StackOutputs, requested: str = "auto") -> str:
    has_athena = bool((outputs.model_extra or {}).get("athena_workgroup"))
    if requested == "athena" and not has_athena:
        raise QueryError(
            "this stack has no Athena workgroup (catalog.enabled is off; the outputs have no "
            "athena_workgroup): use --engine duckdb"
        )
    if requested == "athena" and outputs.aws_endpoint_url:
        raise QueryError(
            "the embedded runtime's Athena (the emulator's) stores workgroups but runs no SQL: "
            "use --engine duckdb (the default there)"
        )
    if requested != "auto":
        return requested
    return "athena" if has_athena and endpoint_of(outputs) is None else "duckdb"


def execute(outputs: StackOutputs, sql: str, engine: str = "auto") -> QueryResult:
    """Run ``sql`` on the stack with the chosen engine."""
    chosen = choose_engine(outputs, engine)
    runner: AthenaEngine | DuckDbEngine = (
        AthenaEngine(outputs) if chosen == "athena" else DuckDbEngine(outputs)
    )
    try:
        return runner.execute(sql)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":  # S3's message names none
            raise StackError(
                f"the processed bucket {outputs.processed_bucket} does not exist (an outputs file "
                "of another stack, or one destroyed since?)"
            ) from exc
        raise StackError(f"cannot read the stack: {exc}") from exc
    except BotoCoreError as exc:
        raise StackError(f"cannot read the stack: {exc}") from exc


# ---------------------------------------------------------------------- DuckDB
def _arrow_type(glue_type: str) -> Any:
    import pyarrow as pa

    return {
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }.get(glue_type, pa.string())


_DUCKDB_TYPES = {
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def _read_as(stored: Column, column: Column) -> str:
    """SQL reading a file's ``stored`` column (its name and type in that file) as the
    table's ``column``: DuckDB's CAST, so a widened value reads as DuckDB writes its type
    (``3.0``, ``2025-01-01 10:00:00``) and a filter compares the table's type."""
    source = ident(stored.name)
    if stored.type == column.type:
        return source
    # The table's type is wider than the file's, or the file had no value in the column
    # (stored as text, all NULL, which types nothing): either way the CAST cannot fail.
    return f"CAST({source} AS {_DUCKDB_TYPES.get(column.type, 'VARCHAR')})"


@dataclass(frozen=True)
class DatasetFile:
    key: str
    size: int
    ingest_date: str
    summary_key: str


class DuckDbEngine:
    """DuckDB over the processed bucket, through pyarrow's S3 filesystem.

    Each table the query names becomes a pyarrow dataset over that dataset's Parquet files
    (Hive partitioning on ``ingest_date``), with the schema the Glue catalog would have:
    the files' summary schemas merged by ``handlers.logic.catalog.merge_columns``. Files
    that store a column otherwise (another spelling; a narrower type, written before the
    type widened) are a dataset of their own, read in their own types and CAST to the
    table's in a view over all of them. DuckDB pushes filters down into the datasets, so
    files of partitions a filter excludes are never opened; every file opened is counted
    (``QueryStats.files_scanned``).
    """

    def __init__(self, outputs: StackOutputs, threads: int = 16):
        from pyarrow import fs

        self.outputs = outputs
        self.bucket = outputs.processed_bucket
        self.s3 = outputs.client("s3")
        self.threads = threads
        credentials = outputs.session().get_credentials()
        if credentials is None:
            raise StackError(
                "no AWS credentials found (the same places boto3 looks: environment, profile, SSO)"
            )
        frozen = credentials.get_frozen_credentials()
        self.filesystem = fs.S3FileSystem(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
            region=outputs.region,
            endpoint_override=endpoint_of(outputs),
        )

    # -------------------------------------------------------------- listing
    def _keys(self, prefix: str) -> Iterable[dict[str, Any]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def datasets(self) -> list[str]:
        """The datasets (tables) of the processed bucket."""
        paginator = self.s3.get_paginator("list_objects_v2")
        names = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=PARQUET_PREFIX, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                part = common["Prefix"][len(PARQUET_PREFIX) :].rstrip("/")
                if part.startswith("dataset="):
                    names.append(part.removeprefix("dataset="))
        return sorted(names)

    def files(self, dataset: str) -> list[DatasetFile]:
        """The dataset's complete files: Parquet whose summary exists (the processor writes
        the summary right after the Parquet; a file without one is still being written)."""
        base = f"dataset={dataset}/"
        summaries = {
            o["Key"][len(SUMMARIES_PREFIX) : -len(".json")] for o in self._keys(SUMMARIES_PREFIX + base)
        }
        found = []
        for obj in self._keys(PARQUET_PREFIX + base):
            key = obj["Key"]
            stem = key[len(PARQUET_PREFIX) : -len(".parquet")] if key.endswith(".parquet") else None
            partition = key[len(PARQUET_PREFIX + base) :].split("/", 1)[0]
            if stem is None or stem not in summaries or not partition.startswith(f"{PARTITION_COLUMN}="):
                continue
            found.append(
                DatasetFile(
                    key=key,
                    size=int(obj.get("Size", 0)),
                    ingest_date=partition.removeprefix(f"{PARTITION_COLUMN}="),
                    summary_key=f"{SUMMARIES_PREFIX}{stem}.json",
                )
            )
        return sorted(found, key=lambda f: (f.ingest_date, f.key))

    def schema(self, files: Sequence[DatasetFile]) -> tuple[list[Column], list[dict[str, Column]]]:
        """The table's columns: the files' summary schemas merged as the Glue catalog merges
        them (names compared in lower case), in each column's first spelling, with the columns
        whose names Glue cannot hold (which Glue leaves out); and per file,
        by lower-case name, each column as that file stores it: its own spelling (Parquet
        names are case-sensitive to pyarrow) and its own type (narrower than the table's
        after a type widened; text for a column with no value)."""

        def read(file: DatasetFile) -> dict[str, Any]:
            return dict(
                json.loads(self.s3.get_object(Bucket=self.bucket, Key=file.summary_key)["Body"].read())
            )

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            summaries = list(pool.map(read, files))
        merged: list[Column] = []
        spelling: dict[str, str] = {}
        for summary in summaries:
            schema = dict(summary.get("schema") or {})
            for name in schema:
                spelling.setdefault(name.lower(), name)
            # a column with no value types nothing (as in Glue): string until a file types it;
            # a column whose name Glue cannot hold (left out of Glue) is kept: DuckDB reads it;
            # integers beyond 2**53 meeting fractions make a string, not a double (as in Glue)
            columns = file_columns(
                schema,
                columns_without_values(summary),
                holdable_only=False,
                beyond_float=columns_beyond_float(summary),
            )
            merged = merge_columns(merged, columns)
        if not merged:
            merged = file_columns({})
        stored = [
            {
                name.lower(): Column(name, GLUE_TYPE_OF.get(str(kind), "string"))
                for name, kind in dict(summary.get("schema") or {}).items()
            }
            for summary in summaries
        ]
        return [Column(spelling.get(c.name, c.name), c.type) for c in merged], stored

    # -------------------------------------------------------------- running
    def _arrow_dataset(self, columns: Sequence[Column], files: Sequence[DatasetFile], filesystem: Any) -> Any:
        """``files`` as one pyarrow dataset with ``columns`` (named and typed as these files
        store them), partitioned by ingest date. Paths and partitions are given, not
        discovered: nothing is listed or opened here."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        schema = pa.schema(
            [pa.field(c.name, _arrow_type(c.type)) for c in columns]
            + [pa.field(PARTITION_COLUMN, pa.string())]
        )
        return ds.FileSystemDataset.from_paths(
            [f"{self.bucket}/{f.key}" for f in files],
            schema=schema,
            format=ds.ParquetFileFormat(),
            filesystem=filesystem,
            partitions=[pc.field(PARTITION_COLUMN) == f.ingest_date for f in files],
        )

    def execute(self, sql: str) -> QueryResult:
        import duckdb

        started = time.perf_counter()
        con = duckdb.connect()
        counter = FileCounter()
        opened = counting_filesystem(self.filesystem, counter)
        try:
            for setting in _LOCKDOWN:
                con.execute(setting)
            try:
                _refuse_writes(con, sql)
                named = {name.lower() for name in con.get_table_names(sql, qualified=False)}
            except duckdb.Error as exc:
                raise QueryError(_duckdb_message(exc)) from exc
            words = [] if named else _words(sql)
            if words in (["show", "tables"], ["show", "all", "tables"]):
                # Athena lists the Glue tables; here no table exists until a query names it
                tables = self.datasets()
                return QueryResult(
                    ["name"], [(t,) for t in tables], QueryStats("duckdb", time.perf_counter() - started)
                )
            if (words[:1] == ["show"] and "tables" in words) or _CATALOG.intersection(words):
                raise QueryError(
                    "the DuckDB engine has a dataset's table only in a query that names it, so "
                    "information_schema, duckdb_tables() and SHOW TABLES FROM list none: "
                    "SHOW TABLES lists the datasets, DESCRIBE <table> a table's columns"
                )
            known = self.datasets() if named else []
            unknown = sorted(named - set(known))
            if unknown:
                raise QueryError(
                    f"unknown table{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                    f"the tables of this stack are: {', '.join(known) or '(none yet: no file has been processed)'}"
                )
            sizes: dict[str, int] = {}
            for dataset in sorted(named):
                files = self.files(dataset)
                columns, stored = self.schema(files)
                sizes.update({f"{self.bucket}/{f.key}": f.size for f in files})
                # Files that store each column alike (spelling and type) are one pyarrow
                # dataset, read with their own names and types: pyarrow evaluates a filter
                # DuckDB pushes down against each file's stored type, so reading an older
                # file's bool as the table's string fails a filter (no kernel for string,
                # bool). Several spellings (Price, price) and types (bigint, then double) are
                # one table, as in Glue: a view renames and CASTs each group's columns to the
                # table's, and a filter on the partition still prunes every group's files.
                by_storage: dict[tuple[Column, ...], list[DatasetFile]] = {}
                for file, own in zip(files, stored, strict=True):
                    # a column the file lacks reads as NULL of the table's type
                    layout = tuple(own.get(c.name.lower(), c) for c in columns)
                    by_storage.setdefault(layout, []).append(file)
                groups = list(by_storage.items()) or [(tuple(columns), [])]
                if len(groups) == 1 and groups[0][0] == tuple(columns):
                    con.register(dataset, self._arrow_dataset(columns, groups[0][1], opened))
                    continue
                parts = []
                for i, (layout, group) in enumerate(groups):
                    part = f"{dataset}-{i}"  # a name no dataset has ([a-z0-9_])
                    con.register(part, self._arrow_dataset(layout, group, opened))
                    selected = ", ".join(
                        f"{_read_as(own, c)} AS {ident(c.name)}"
                        for own, c in zip(layout, columns, strict=True)
                    )
                    parts.append(f"SELECT {selected}, {PARTITION_COLUMN} FROM {ident(part)}")
                con.execute(f"CREATE TEMP VIEW {ident(dataset)} AS {' UNION ALL '.join(parts)}")
            try:
                columns_out, rows = _interruptible(con, lambda: _fetch(con, sql))
            except duckdb.InterruptException as exc:  # our interrupt(), on Ctrl-C
                raise KeyboardInterrupt from exc
            except duckdb.Error as exc:
                if (unread := counter.failure()) is not None:  # the stack, not the SQL
                    raise StackError(unread) from exc
                raise QueryError(_duckdb_message(exc)) from exc
            except RuntimeError as exc:
                # Ctrl-C while DuckDB runs: it stops the query and raises a bare RuntimeError
                # instead of the KeyboardInterrupt the command line turns into its exit status
                if str(exc) == DUCKDB_INTERRUPTED:
                    raise KeyboardInterrupt from exc
                raise
        finally:
            con.close()
            released = weakref.ref(opened.handler)
            del opened
            _wait_until_released(released)
        scanned = sorted(counter.opened)
        stats = QueryStats(
            engine="duckdb",
            seconds=time.perf_counter() - started,
            files_scanned=[f"s3://{path}" for path in scanned],
            files_total=len(sizes),
            bytes_scanned=sum(sizes.get(path, 0) for path in scanned),
        )
        return QueryResult(columns_out, rows, stats)


def _fetch(con: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description or []]
    return columns, [tuple(r) for r in cursor.fetchall()] if cursor.description else []


# How long a query stopped by Ctrl-C may take to end before the command exits without it.
INTERRUPT_SECONDS = 5.0


def _interruptible(con: Any, work: Callable[[], Any]) -> Any:
    """``work`` (DuckDB calls on ``con``) on a thread of its own, so that Ctrl-C stops it.

    DuckDB's client looks for SIGINT only in some operators: a join without an equality
    (a nested loop: ``ON a.x + b.y = 7``, ``ON a.x < b.y``) ran on for minutes after
    Ctrl-C, and a second Ctrl-C too. Here the main thread waits, takes the
    KeyboardInterrupt and calls ``con.interrupt()``, which every operator honours. A query
    still running :data:`INTERRUPT_SECONDS` later is left behind (:func:`_abandon`)."""
    outcome: dict[str, Any] = {}
    # An Event, not Thread.join: a join that Ctrl-C interrupts leaves the thread looking
    # finished to the next join and to is_alive() (Python 3.11) while DuckDB still runs.
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised on the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    try:
        # started in here: Ctrl-C may come while start() waits for the thread to run
        threading.Thread(target=target, name="headrace-duckdb-query", daemon=True).start()
        while not done.wait(0.25):  # back in Python now and then: the SIGINT may have woken
            pass  # another thread than this one, which sees it only then
    except KeyboardInterrupt:
        con.interrupt()
        if not done.wait(INTERRUPT_SECONDS):
            _abandon()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _abandon() -> None:
    """End the process at once, as interrupted: a DuckDB query that ignores its interrupt
    still runs, and neither closing its connection nor the interpreter's exit (which
    would call into it) can be waited for."""
    sys.stdout.flush()
    print("headrace: interrupted (the query did not stop: left running as the process ends)", file=sys.stderr)
    sys.stderr.flush()
    os._exit(130)


# How long a query waits for pyarrow to let go of its filesystem (see _wait_until_released).
RELEASE_SECONDS = 30.0


def _wait_until_released(handler: weakref.ref[Any], timeout: float = RELEASE_SECONDS) -> None:
    """Wait until no pyarrow task holds the query's filesystem ``handler`` (Python code).

    A query that stops before its scan ends (LIMIT, an error) leaves pyarrow's read-ahead
    tasks running on pyarrow's threads after DuckDB lets go; each opens its file through
    the handler and drops the filesystem when done, both of which take Python's lock. One
    still running when the command exits calls into an interpreter that is shutting down:
    the process aborted (status 134, ``terminate called without an active exception``) or
    hung for good after printing the right result. Once the handler is gone nothing of
    pyarrow's can call into Python any more; this takes the time of the reads in flight."""
    gc.collect()  # whatever only a reference cycle still holds
    deadline = time.monotonic() + timeout
    while handler() is not None and time.monotonic() < deadline:
        time.sleep(0.01)


# What DuckDB's Python client raises when a SIGINT (Ctrl-C) stops a query it runs.
DUCKDB_INTERRUPTED = "Query interrupted"

# What lists the tables of DuckDB's catalog, which holds no dataset unless the query names it.
_CATALOG = frozenset(
    {
        "information_schema",
        "pg_catalog",
        "duckdb_tables",
        "duckdb_views",
        "duckdb_columns",
        "pg_tables",
        "pg_views",
        "pg_class",
        "sqlite_master",
        "sqlite_schema",
    }
)


def _words(sql: str) -> list[str]:
    """The SQL's tokens in lower case, without comments, quotes or a trailing ``;``
    (``SHOW  tables -- all`` is ``["show", "tables"]``)."""
    import duckdb

    tokens = duckdb.tokenize(sql)
    ends = [start for start, _ in tokens[1:]] + [len(sql)] if tokens else []
    words = [
        sql[start:end].strip().strip('"').lower()
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    while words and words[-1] == ";":
        words.pop()
    return words


# Set on the new connection, before DuckDB sees the user's SQL (finding the table names binds
# it, which already opens files and installs extensions): the SQL reads the tables registered
# afterwards (pyarrow datasets over the stack's S3 API, which DuckDB does not open itself) and
# nothing else. No local or remote file (read_csv, read_text, glob, COPY, ATTACH, EXPORT), no
# Python variable picked up by name, no extension installed or loaded, and the configuration
# locked so the SQL cannot SET any of it back. The session time zone is UTC, Athena's and the
# one the Parquet stores timestamps in (DuckDB would take the machine's): a TIMESTAMPTZ
# literal, now() or a cast to TIMESTAMPTZ means the same instant on every machine.
_LOCKDOWN = (
    "SET TimeZone = 'UTC'",
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)

# The statement types run. SELECT covers WITH, FROM-first, VALUES, DESCRIBE, SHOW and
# SUMMARIZE; MULTI is a PIVOT (which DuckDB expands into several statements).
_READ_ONLY = ("SELECT", "EXPLAIN", "MULTI")


# EXPLAIN's own words, before the statement it explains: ANALYZE runs that statement.
_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?:ANALY[SZ]E\s+|\([^)]*\)\s*)*", re.IGNORECASE)


def _refuse_writes(con: Any, sql: str) -> None:
    """Refuse, before anything runs, every statement that is not a query (COPY, ATTACH,
    INSTALL, SET, CREATE, ...), explained ones too (EXPLAIN ANALYZE runs them): headrace
    query only reads, and an in-memory CREATE or INSERT would report a success that changes
    nothing."""
    for statement in con.extract_statements(sql):
        text = str(statement.query)
        explained = _EXPLAIN.match(text) if statement.type.name == "EXPLAIN" else None
        if explained:
            _refuse_writes(con, text[explained.end() :])
        elif statement.type.name not in _READ_ONLY or statement.type.name == "EXPLAIN":
            words = str(statement.query).split()
            verb = words[0].upper() if words and words[0].isalpha() else ""
            verb = verb if verb not in ("", "WITH") else statement.type.name  # WITH ... INSERT
            raise QueryError(
                f"headrace query only reads: {verb} statements are not run "
                "(SELECT, WITH, DESCRIBE, SHOW or EXPLAIN over the stack's tables)"
            )


def _duckdb_message(exc: Exception) -> str:
    import duckdb

    message = str(exc).strip()
    if isinstance(exc, duckdb.PermissionException):
        # the lockdown refused a file, a URL or an extension: one line, and why
        return f"DuckDB: {message.splitlines()[0]} (headrace query reads only the stack's tables)"
    return f"DuckDB: {message}"


class FileCounter:
    """Records every file a pyarrow filesystem opens (the files a query really read)."""

    def __init__(self) -> None:
        self.opened: set[str] = set()
        # files that could not be opened: path, whether it was missing, why. Not the exception
        # itself: its traceback holds the filesystem's handler, for which the query waits
        # (_wait_until_released) until it is let go, 30 s.
        self.failed: list[tuple[str, bool, str]] = []
        self._lock = threading.Lock()

    def note(self, path: str) -> None:
        with self._lock:
            self.opened.add(path)

    def note_failure(self, path: str, exc: OSError) -> None:
        with self._lock:
            self.failed.append((path, isinstance(exc, FileNotFoundError), str(exc)))

    def failure(self) -> str | None:
        """Why the query could not read a file of the stack, in one line; None if it could.
        DuckDB's own error wraps pyarrow's in a Python traceback of many lines."""
        if not self.failed:
            return None
        path, missing, why = self.failed[0]
        if missing:
            # the processor deletes a version's Parquet when a newer version of the key completes
            return (
                f"s3://{path} was deleted while the query ran (a newer version of its file "
                "replaced it): run the query again"
            )
        return f"cannot read s3://{path}: {why.strip().splitlines()[0]}"


def counting_filesystem(inner: Any, counter: FileCounter) -> Any:
    """A read-only pyarrow filesystem over ``inner`` that tells ``counter`` each file it opens.
    (pyarrow is imported here, not at start-up: other commands do not need it.)"""
    from pyarrow import fs

    class Handler(fs.FileSystemHandler):  # type: ignore[misc]
        def get_type_name(self) -> str:
            return f"counting+{inner.type_name}"

        def normalize_path(self, path: str) -> str:
            return str(inner.normalize_path(path))

        def get_file_info(self, paths: list[str]) -> Any:
            return inner.get_file_info(paths)

        def get_file_info_selector(self, selector: Any) -> Any:
            return inner.get_file_info(selector)

        def open_input_file(self, path: str) -> Any:
            counter.note(path)
            try:
                return inner.open_input_file(path)
            except OSError as exc:
                counter.note_failure(path, exc)
                raise

        def open_input_stream(self, path: str) -> Any:
            counter.note(path)
            try:
                return inner.open_input_stream(path)
            except OSError as exc:
                counter.note_failure(path, exc)
                raise

        def _read_only(self, *args: Any) -> Any:
            raise OSError("headrace query only reads")

        create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
        delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only

        def __eq__(self, other: object) -> bool:
            return self is other

        def __ne__(self, other: object) -> bool:
            return self is not other

        __hash__ = object.__hash__

    return fs.PyFileSystem(Handler())


# ---------------------------------------------------------------------- Athena
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class AthenaEngine:
    """StartQueryExecution in the stack's workgroup (which enforces the results location,
    their encryption and the bytes-scanned limit), poll, page the results."""

    def __init__(
        self,
        outputs: StackOutputs,
        sleep: Callable[[float], None] = time.sleep,
        timeout_seconds: float = 30 * 60,
    ):
        self.athena = outputs.client("athena")
        self.glue = outputs.client("glue")
        self.workgroup = str(outputs.get("athena_workgroup"))
        self.database = str(outputs.get("glue_database"))
        self.sleep = sleep
        self.timeout_seconds = timeout_seconds

    def tables(self) -> list[str]:
        names: list[str] = []
        for page in self.glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
            names.extend(t["Name"] for t in page.get("TableList", []))
        return sorted(names)

    def execute(self, sql: str) -> QueryResult:
        started = time.perf_counter()
        try:
            query_id = self.athena.start_query_execution(
                QueryString=sql,
                WorkGroup=self.workgroup,
                QueryExecutionContext={"Database": self.database},
            )["QueryExecutionId"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRequestException":
                raise QueryError(f"Athena: {exc.response['Error'].get('Message', exc)}") from exc
            raise
        try:
            execution = self._wait(query_id)
        except KeyboardInterrupt:
            self.athena.stop_query_execution(QueryExecutionId=query_id)
            raise
        status = execution["Status"]
        if status["State"] != "SUCCEEDED":
            raise QueryError(self._failure(status))
        columns, rows = self._results(query_id, skip_header=execution.get("StatementType") == "DML")
        statistics = execution.get("Statistics", {})
        stats = QueryStats(
            engine="athena",
            seconds=time.perf_counter() - started,
            bytes_scanned=int(statistics.get("DataScannedInBytes", 0)),
            query_id=query_id,
        )
        return QueryResult(columns, rows, stats)

    def _wait(self, query_id: str) -> dict[str, Any]:
        delay, waited = 0.25, 0.0
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            if execution["Status"]["State"] in TERMINAL:
                return dict(execution)
            if waited >= self.timeout_seconds:
                self.athena.stop_query_execution(QueryExecutionId=query_id)
                raise QueryError(
                    f"Athena: no result after {self.timeout_seconds:.0f} s; query {query_id} stopped"
                )
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)

    def _failure(self, status: dict[str, Any]) -> str:
        reason = str(
            status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or ""
        )
        state = status["State"].lower()
        if "scanned" in reason.lower() and "limit" in reason.lower():
            limit = self._limit()
            return (
                f"Athena {state} the query: it would scan more than the workgroup's limit"
                f"{f' of {_size(limit)}' if limit else ''} (headrace:catalog.bytes_scanned_limit_mb). "
                f"Narrow it, e.g. WHERE {PARTITION_COLUMN} = 'YYYY-MM-DD', or select fewer columns. ({reason})"
            )
        message = f"Athena {state} the query: {reason or 'no reason given'}"
        if "TABLE_NOT_FOUND" in reason or "does not exist" in reason:
            message += f"; the tables of this stack are: {', '.join(self.tables()) or '(none yet)'}"
        return message

    def _limit(self) -> int | None:
        try:
            configuration = self.athena.get_work_group(WorkGroup=self.workgroup)["WorkGroup"]["Configuration"]
        except ClientError:
            return None
        value = configuration.get("BytesScannedCutoffPerQuery")
        return int(value) if value else None

    def _results(self, query_id: str, skip_header: bool) -> tuple[list[str], list[tuple[Any, ...]]]:
        columns: list[str] = []
        types: list[str] = []
        rows: list[tuple[Any, ...]] = []
        first = True
        for page in self.athena.get_paginator("get_query_results").paginate(
            QueryExecutionId=query_id, PaginationConfig={"PageSize": 1000}
        ):
            result = page["ResultSet"]
            if first:
                info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                columns = [c["Name"] for c in info]
                types = [c.get("Type", "varchar") for c in info]
            page_rows = result.get("Rows", [])
            if first and skip_header and page_rows:
                page_rows = page_rows[1:]
            first = False
            for row in page_rows:
                values = [d.get("VarCharValue") for d in row.get("Data", [])]
                rows.append(tuple(_athena_value(v, t) for v, t in zip(values, types, strict=False)))
        return columns, rows


def _athena_value(value: str | None, athena_type: str) -> Any:
    """Athena returns every value as text; numbers and booleans become Python values."""
    if value is None:
        return None
    kind = athena_type.lower()
    try:
        if kind in ("tinyint", "smallint", "integer", "int", "bigint"):
            return int(value)
        if kind in ("double", "float", "real"):
            return float(value)
        if kind.startswith("decimal"):
            return Decimal(value)
    except ValueError:
        return value
    if kind == "boolean":
        return value == "true"
    return value


# ---------------------------------------------------------------------- output
def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no infinity: the words PostgreSQL writes (and reads back) instead
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, Decimal):  # kept exact: written from its own digits, never a float
        return int(value) if value.is_finite() and value == value.to_integral_value() else value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):  # LIST and STRUCT results hold values of their own
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def json_keys(columns: Sequence[str]) -> list[str]:
    """The JSON object keys of ``columns``: a name that repeats (a join's two ``ingest_date``)
    gets ``_2``, ``_3``, ... from its second time on, skipping names the result has anyway,
    so no column is lost to a key written twice."""
    reserved, taken, keys = set(columns), set(), []
    for name in columns:
        key, n = name, 1
        while key in taken or (n > 1 and key in reserved):
            n += 1
            key = f"{name}_{n}"
        taken.add(key)
        keys.append(key)
    return keys


# The table output's default row limit: laying out a table costs time and memory per row
# (300,000 rows took Rich minutes and a gigabyte), and nobody reads that many in a terminal.
TABLE_ROWS = 1000


def _json(value: Any, indent: str | None = None, level: int = 0) -> str:
    """``value`` (``_plain``) as JSON text, laid out as ``json.dumps(indent=...)`` lays it out;
    a DECIMAL is a JSON number written from its own digits (``json`` would write it through a
    float: 1234567890123456.78 became 1234567890123456.8)."""
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, dict | list):
        items = (
            [
                f"{_escape_c1(json.dumps(str(k), ensure_ascii=False))}: {_json(v, indent, level + 1)}"
                for k, v in value.items()
            ]
            if isinstance(value, dict)
            else [_json(v, indent, level + 1) for v in value]
        )
        start, end = ("{", "}") if isinstance(value, dict) else ("[", "]")
        if not items:
            return start + end
        if indent is None:
            return start + ", ".join(items) + end
        inner, outer = "\n" + indent * (level + 1), "\n" + indent * level
        return start + inner + ("," + inner).join(items) + outer + end
    return _escape_c1(json.dumps(value, ensure_ascii=False, default=str, allow_nan=False))


def render(result: QueryResult, fmt: str, out: Any, max_rows: int | None = TABLE_ROWS) -> None:
    """``result`` as ``fmt`` on ``out``: csv and json always hold every row; the table shows
    the first ``max_rows`` (``None``: all) and says how many it left out."""
    if fmt == "json":
        keys = json_keys(result.columns)
        out.write("[")
        for i, row in enumerate(result.rows):
            record = {k: _plain(v) for k, v in zip(keys, row, strict=True)}
            out.write(("," if i else "") + "\n  " + _json(record, "  ", 1))
        out.write("\n]\n" if result.rows else "]\n")
        return
    # In a terminal, a control character in a name or value (ESC starting a sequence the
    # terminal would obey, a carriage return overwriting the line) shows as an escape
    terminal = hasattr(out, "isatty") and out.isatty()
    if fmt == "csv":
        shown: Callable[[str], str] = visible if terminal else str
        out.write(_csv_line([shown(c) for c in result.columns]))
        for row in result.rows:
            out.write(_csv_line([None if v is None else shown(_text(v)) for v in row]))
        return
    from rich.console import Console
    from rich.table import Table

    total = len(result.rows)
    rows = result.rows if max_rows is None else result.rows[:max_rows]
    table = Table(show_lines=False)
    numeric = [
        any(row[i] is not None for row in rows)
        and all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in rows)
        for i in range(len(result.columns))
    ]
    # Control characters show as escapes in a file too (Rich would drop some and pass ESC)
    for name, right in zip(result.columns, numeric, strict=True):
        table.add_column(_escape(visible(name)), justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*("[dim]NULL[/]" if v is None else _escape(visible(_text(v))) for v in row))
    # In a terminal the table fits its width; into a file or pipe it keeps its natural width.
    console = Console(file=out, soft_wrap=False, width=None if terminal else 10_000)
    console.print(table)
    count = f"{total:,} row{'s' if total != 1 else ''}"
    if len(rows) == total:
        console.print(count, style="dim")
        return
    console.print(
        f"{count}; the first {len(rows):,} shown, {total - len(rows):,} not shown: "
        "--format csv or --format json writes every row, --max-rows N shows more (0: all)",
        style="bold",
        markup=False,
    )


# A field CSV readers split or mistake unless quoted (Python's csv writer, given "\n" as the
# line end, left a carriage return bare: pandas and csv.reader then broke the row in two).
_CSV_QUOTE = re.compile(r'[,"\r\n]')


def _csv_line(fields: Sequence[str | None]) -> str:
    """One CSV record (RFC 4180 quoting, ``\\n`` line end): NULL is an empty field, an empty
    string ``""`` (as DuckDB's and PostgreSQL's CSV write them); a row of one NULL is ``""``
    too, which no reader skips as a blank line."""
    line = ",".join(
        ""
        if field is None
        else f'"{field.replace(chr(34), chr(34) * 2)}"'
        if field == "" or _CSV_QUOTE.search(field)
        else field
        for field in fields
    )
    return (line or '""') + "\n"


def _text(value: Any) -> str:
    """A value as the csv and table formats write it: a LIST or STRUCT as JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    plain = _plain(value)
    return _json(plain) if isinstance(plain, list | dict) else str(plain)


# Control characters (C0 but the line break, DEL, C1): what a terminal obeys rather than shows.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_C1 = re.compile(r"[\x7f-\x9f]")
_NAMED = {"\t": "\\t", "\r": "\\r"}


def visible(text: str) -> str:
    """``text`` with each control character but the line break written as an escape
    (``\\x1b``, ``\\r``, ``\\t``, ``\\x9b``): data cannot move the cursor, retitle the window,
    recolour or clear the screen of whoever reads it in a terminal."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def _escape_c1(text: str) -> str:
    """JSON text with DEL and the C1 controls (which ``json.dumps`` leaves raw, unlike C0)
    as ``\\u`` escapes: the same string to a JSON reader, nothing a terminal obeys."""
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


# ---------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "query",
        help="run SQL over the processed data of a stack (Athena on AWS, DuckDB locally)",
        description=__doc__,
        formatter_class=DocstringHelp,
    )
    p.add_argument("sql", help='SQL, e.g. "SELECT count(*) FROM sales"; tables are the datasets')
    add_outputs_option(p)
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output (default table)"
    )
    p.add_argument("--engine", choices=ENGINES, default="auto", help="default auto (see above)")
    p.add_argument(
        "--explain", action="store_true", help="also list on stderr each Parquet file the query opened"
    )
    p.add_argument(
        "--max-rows",
        type=_row_limit,
        default=TABLE_ROWS,
        metavar="N",
        help=f"rows the table format shows (default {TABLE_ROWS}; 0: all); csv and json write every row",
    )
    p.set_defaults(func=run)


def _row_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows, 0 for all: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        outputs = StackOutputs.load(args.outputs)
        result = execute(outputs, args.sql, args.engine)
    except QueryError as exc:
        # DuckDB's message may quote a value or a column name of the data
        print(f"headrace: error: {visible(str(exc))}", file=sys.stderr)
        return 1
    except (OutputsError, StackError) as exc:
        print(f"headrace: error: {visible(str(exc))}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(
            f"headrace: error: cannot read the stack in {args.outputs}: {visible(str(exc))}", file=sys.stderr
        )
        return 2
    render(result, args.format, sys.stdout, max_rows=args.max_rows or None)
    if args.format == "json":
        renamed = [
            f"{c} -> {k}" for c, k in zip(result.columns, json_keys(result.columns), strict=True) if c != k
        ]
        if renamed:
            print(
                f"headrace: note: repeated column names keyed as {visible(', '.join(renamed))}",
                file=sys.stderr,
            )
    print(result.stats.line(), file=sys.stderr)
    if args.explain:
        if result.stats.engine == "athena":
            print("athena: files opened are not reported; see the bytes scanned above", file=sys.stderr)
        for path in result.stats.files_scanned:
            print(f"scanned: {path}", file=sys.stderr)
    return 0
