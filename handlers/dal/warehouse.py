"""The PostgreSQL warehouse (README "Warehouse"; docs/warehouse-and-reports.md).

Layout, in the schema ``WAREHOUSE_SCHEMA`` (default ``headrace``):

- ``"<dataset>"``: one table per dataset; the file's columns, ``_rescued_data`` (jsonb), and
  the lineage columns ``object_key``, ``object_version``, ``line_number``, ``loaded_at``;
  indexed on ``object_key``.
- ``_files``: one row per loaded object key (its current version): version, dataset, table,
  row count, schema, where its Parquet is, upload/processing/load times.
- ``_migrations``: the versions of this module's DDL applied so far.

Loading one file takes two transactions. First, when the file brings columns the table
lacks or wider types, the table is altered in a short transaction of its own: ``ALTER
TABLE`` takes an ACCESS EXCLUSIVE lock, which blocks every reader of the table until
commit, so it must not be held through the load; it waits at most
``SCHEMA_LOCK_TIMEOUT_MS`` for queries already running (new readers queue behind a waiting
ALTER) and is retried ``SCHEMA_LOCK_ATTEMPTS`` times. Then ONE transaction deletes the
key's previous rows, COPYs the new ones and upserts its ``_files`` row (a new dataset's
table is created in it too): readers see the old rows or the new ones, never a mix or a
part. A load that fails after its table change leaves that change (a nullable column, a
wider type), which the next file would have made anyway. An object key holds one version
at a time: a newer upload of the same key replaces the older one's rows; an older version
arriving later (a retry), or one the processor marked superseded (the order of versions
uploaded within one second), is skipped as superseded. Loads of one dataset are serialized
(advisory lock, taken by both transactions), which also serializes its table changes.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from handlers.dal.secrets import Credentials, InvalidSecret
from handlers.logic.warehouse.schema import (
    FLOAT_EXACT_INTEGER,
    LINE_NUMBER,
    LINEAGE_COLUMNS,
    LOADED_AT,
    OBJECT_KEY,
    OBJECT_VERSION,
    PG_TYPES,
    ColumnLoad,
    LoadPlan,
    LogicalType,
    cast_for_widening,
    index_name,
    pg_name,
    plan_load,
)

CONNECT_TIMEOUT_SECONDS = 5
# How long a table change (ADD COLUMN, a widening) waits for the table's lock, and how many
# times it tries: every query started on the table while it waits queues behind it.
SCHEMA_LOCK_TIMEOUT_MS = 3_000
SCHEMA_LOCK_ATTEMPTS = 4
SCHEMA_RETRY_PAUSE_SECONDS = 0.5
# Rounds of "change the table, then load": another round is needed only when the table
# changed again between the two transactions (say, a column dropped by hand).
SCHEMA_ROUNDS = 3
SQLSTATE_UNTRANSLATABLE_CHARACTER = "22P05"
FILES_TABLE = "_files"
MIGRATIONS_TABLE = "_migrations"

# Versioned DDL for the warehouse's own tables; append, never edit an applied step.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "lineage table: one row per loaded object key",
        """
        CREATE TABLE {schema}._files (
            object_key      text PRIMARY KEY,
            object_version  text NOT NULL,
            dataset         text NOT NULL,
            table_name      text NOT NULL,
            source_bucket   text NOT NULL,
            format          text,
            row_count       bigint NOT NULL,
            schema          jsonb NOT NULL,
            renamed_columns jsonb NOT NULL DEFAULT '{{}}',
            lineage_unit    text NOT NULL,
            processed_bucket text NOT NULL,
            parquet_key     text NOT NULL,
            summary_key     text NOT NULL,
            uploaded_at     timestamptz,
            processed_at    timestamptz,
            loaded_at       timestamptz NOT NULL
        );
        CREATE INDEX _files_dataset_idx ON {schema}._files (dataset, loaded_at);
        """,
    ),
    (
        2,
        "dataset indexes start with '_', so a dataset never collides with another one's index",
        """
        DO $$
        DECLARE r record;
        BEGIN
          FOR r IN
            SELECT ic.relname AS index_name, tc.relname AS table_name
            FROM pg_index x
            JOIN pg_class ic ON ic.oid = x.indexrelid
            JOIN pg_class tc ON tc.oid = x.indrelid
            WHERE tc.relnamespace = '{schema}'::regnamespace
              AND ic.relname = tc.relname || '_object_key_idx'
              AND octet_length('_' || tc.relname || '_object_key_idx') <= 63
              AND NOT EXISTS (
                SELECT 1 FROM pg_class taken
                WHERE taken.relnamespace = tc.relnamespace
                  AND taken.relname = '_' || tc.relname || '_object_key_idx'
              )
          LOOP
            EXECUTE 'ALTER INDEX {schema}.' || quote_ident(r.index_name)
              || ' RENAME TO ' || quote_ident('_' || r.table_name || '_object_key_idx');
          END LOOP;
        END $$;
        """,
    ),
    (
        3,
        "the NUL characters a load removed from each text column (PostgreSQL text cannot hold them)",
        """
        ALTER TABLE {schema}._files ADD COLUMN nuls_removed jsonb NOT NULL DEFAULT '{{}}';
        """,
    ),
)


SQLSTATE_CLASS_PROGRAM_LIMIT = "54"  # the SQLSTATE class of PostgreSQL's hard limits
SQLSTATE_CLASS_TRANSACTION_ROLLBACK = "40"  # deadlocks, serialization failures
# PostgreSQL's limit on a table's columns (MaxHeapAttributeNumber), counting every column
# ever added to it: one dropped by hand keeps its place for good.
MAX_TABLE_COLUMNS = 1600


class DatabaseUnavailable(Exception):
    """No connection to the database (down, unreachable, or credentials rejected)."""


class LoadTimedOut(Exception):
    """The load would have outlived the function (statement or lock timeout): rolled back."""


class LoadConflicted(Exception):
    """PostgreSQL rolled the load back to resolve a conflict with a concurrent transaction
    (a deadlock, a serialization failure), again after one immediate retry: retried later."""


class LoadRejected(Exception):
    """The file cannot be loaded as it is (the message says why); retrying will not help:
    the loader records it ``rejected`` and does not retry it (handlers/loader.py)."""


@dataclass(frozen=True)
class FileToLoad:
    object_key: str
    object_version: str
    dataset: str
    source_bucket: str
    format: str
    row_count: int
    lineage_unit: str
    processed_bucket: str
    parquet_key: str
    summary_key: str
    uploaded_at: datetime | None
    processed_at: datetime | None
    # integer columns with a value a double cannot hold exactly (never loaded into one)
    ints_beyond_float: frozenset[str] = frozenset()
    # source column -> cells holding a NUL character, which the load removes
    nuls_removed: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadOutcome:
    status: str  # "loaded" | "superseded"
    table: str
    rows: int = 0
    replaced_rows: int = 0
    columns_added: tuple[str, ...] = ()
    columns_widened: tuple[str, ...] = ()
    current_version: str | None = None
    nuls_removed: dict[str, int] = field(default_factory=dict)


RowsSource = Callable[[list[ColumnLoad]], Generator[bytes, None, None]]


class Connections:
    """One connection per execution environment, reused across invocations and replaced
    when broken. After a failed connect, the rest of the invocation fails fast instead of
    waiting for the connect timeout once per record (``begin_invocation`` resets it)."""

    def __init__(self, credentials: Callable[[bool], Credentials], application_name: str = "headrace-loader"):
        self._credentials = credentials
        self._application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None
        self._down: str | None = None
        self.fresh = False  # whether the current connection was opened in this invocation

    def begin_invocation(self) -> None:
        self._down = None
        self.fresh = False

    def get(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        if self._down:
            raise DatabaseUnavailable(f"database unavailable (earlier in this invocation: {self._down})")
        self.close()
        cached: Credentials | None = None
        try:
            cached = self._credentials(False)
            self._conn = self._connect(cached)
        except (psycopg.OperationalError, InvalidSecret) as exc:
            # The secret may have changed since it was cached (for an hour): a rotated
            # password, a new host or port, a value corrected after a wrong one. Read it
            # again, and connect again only if it changed: a server that is down is not
            # waited for twice.
            fresh: Credentials | None
            try:
                fresh = self._credentials(True)
            except Exception:
                if isinstance(exc, InvalidSecret):
                    raise
                fresh = cached  # the secret cannot be read now: the connection's error stands
            if fresh == cached:
                if isinstance(exc, InvalidSecret):
                    raise
                self._down = _first_line(exc)
                raise DatabaseUnavailable(f"database unavailable: {self._down}") from exc
            assert fresh is not None
            try:
                self._conn = self._connect(fresh)
            except psycopg.OperationalError as again:
                self._down = _first_line(again)
                raise DatabaseUnavailable(f"database unavailable: {self._down}") from again
        except Exception as exc:
            if cached is not None:
                raise
            # The secret could not be read (Secrets Manager throttling, its endpoint out of
            # reach): as with a failed connect, the rest of the invocation fails fast instead
            # of each record calling Secrets Manager again (and waiting out its timeouts).
            self._down = f"the database secret could not be read: {_first_line(exc)}"
            raise DatabaseUnavailable(f"database unavailable: {self._down}") from exc
        self.fresh = True
        return self._conn

    def _connect(self, c: Credentials) -> psycopg.Connection[Any]:
        # The rows are UTF-8 (DuckDB writes them so): say so, whatever the database's
        # encoding, so that PostgreSQL converts them into it (LATIN1, WIN1252...) instead of
        # storing UTF-8 bytes as if they were its own characters (``José`` as ``JosÃ©``), and
        # refuses a character that encoding cannot hold.
        return psycopg.connect(
            client_encoding="UTF8",
            host=c.host,
            port=c.port,
            dbname=c.dbname,
            user=c.username,
            password=c.password,
            sslmode=c.sslmode,
            sslrootcert=_root_certificate_file(c.sslrootcert) if c.sslrootcert else None,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=self._application_name,
            keepalives=1,
            keepalives_idle=30,
        )

    def discard(self) -> None:
        """Drop a connection that failed mid-use; the next ``get`` reconnects."""
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


# This process's own directory for the certificate files (see _root_certificate_file).
_certificate_dir: Path | None = None


def _root_certificate_file(pem: str) -> str:
    """libpq reads its certificate authorities from a file: the secret's PEM text written
    once per execution environment, named by its content so that a rotated bundle gets a
    file of its own. The file is in a directory of this process's own (``mkdtemp``: mode
    0700, a name nobody can guess), never at a fixed name in the shared temporary
    directory: there, whoever wrote that file first (another user of the machine) chose
    the authorities the loader trusts with ``verify-full``, hence which server receives
    its password, and could turn the write itself onto a file of their choosing (a
    symbolic link at the fixed name of the partial file)."""
    global _certificate_dir
    temporary = Path(tempfile.gettempdir())
    if _certificate_dir is None or _certificate_dir.parent != temporary or not _certificate_dir.is_dir():
        _certificate_dir = Path(tempfile.mkdtemp(prefix="headrace-sslrootcert-", dir=temporary))
        atexit.register(shutil.rmtree, _certificate_dir, True)
    data = pem.encode()
    path = _certificate_dir / f"{hashlib.sha256(data).hexdigest()[:16]}.pem"
    if not path.exists():
        fd, partial = tempfile.mkstemp(dir=_certificate_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(partial, path)  # atomic: a concurrent reader never sees half a file
    return str(path)


class Warehouse:
    def __init__(self, connections: Connections, schema: str = "headrace"):
        self.connections = connections
        self.schema = schema
        self._ready: psycopg.Connection[Any] | None = None  # connection the migrations ran on

    def prepare(self) -> None:
        """Connect and apply the migrations now rather than on the first load."""
        self._migrate(self.connections.get())

    # ------------------------------------------------------------------ loading
    def load(
        self,
        file: FileToLoad,
        incoming: list[tuple[str, LogicalType | None]],
        rows: RowsSource,
        *,
        deadline: float | None = None,
        replaced_by: Callable[[], str | None] = lambda: None,
    ) -> LoadOutcome:
        """Load one file: change its table if the file needs it (a short transaction of its
        own), then replace the key's rows in one transaction. ``deadline`` (a
        ``time.monotonic()`` value) bounds the whole load: every statement and lock wait
        ends by it. ``replaced_by()``: the newer version of the key that replaced this one,
        if any (the processor's ``superseded_by``), asked under the key's lock: such a
        version is skipped as superseded, whatever the upload times say. A connection
        reused from an earlier invocation that turns out to be dead is replaced and the
        load retried once (it is idempotent)."""
        until = _Deadline(deadline)
        for attempt in (1, 2):
            conn = self.connections.get()
            reused = not self.connections.fresh
            try:
                self._migrate(conn, until)
                return self._load(conn, file, incoming, rows, until, replaced_by)
            except (errors.QueryCanceled, errors.LockNotAvailable) as exc:
                # the transaction was rolled back; the connection is fine
                raise LoadTimedOut(
                    f"the load ran out of time and was rolled back: {_first_line(exc)}"
                ) from exc
            except errors.UntranslatableCharacter as exc:
                # the connection speaks UTF-8; the database's encoding lacks a character
                encoding = conn.info.parameter_status("server_encoding") or "?"
                raise LoadRejected(
                    f"the warehouse database's encoding ({encoding}) cannot hold a character of "
                    f"this file; nothing was loaded: {_first_line(exc)}"
                ) from exc
            except psycopg.OperationalError as exc:
                if (exc.sqlstate or "").startswith(SQLSTATE_CLASS_TRANSACTION_ROLLBACK):
                    # A deadlock, or a serialization failure (a default_transaction_isolation
                    # of serializable): rolled back to let a concurrent transaction through
                    # (psycopg files these with connection losses, not all under
                    # TransactionRollback). The connection is fine and the load idempotent:
                    # once more at once, then retried later.
                    if attempt == 1:
                        continue
                    raise LoadConflicted(
                        "PostgreSQL rolled the load back twice to resolve a conflict with a concurrent "
                        f"transaction ({_CONFLICTS.get(exc.sqlstate or '', 'a conflict')}); nothing was "
                        f"loaded, the load is retried: {_first_line(exc)}"
                    ) from exc
                if (exc.sqlstate or "").startswith(SQLSTATE_CLASS_PROGRAM_LIMIT):
                    # 1,600 columns per table, a row larger than a page...: rolled back, and
                    # the connection is fine (psycopg files these with connection losses)
                    raise LoadRejected(f"PostgreSQL cannot hold this file: {_first_line(exc)}") from exc
                self.connections.discard()
                self._ready = None
                if attempt == 1 and reused and _is_connection_loss(exc):
                    continue
                raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    def _load(
        self,
        conn: psycopg.Connection[Any],
        file: FileToLoad,
        incoming: list[tuple[str, LogicalType | None]],
        rows: RowsSource,
        deadline: _Deadline,
        replaced_by: Callable[[], str | None],
    ) -> LoadOutcome:
        table = pg_name(file.dataset)  # datasets longer than 63 bytes get a hashed suffix
        added: list[str] = []
        widened: list[str] = []
        for round_ in range(1, SCHEMA_ROUNDS + 1):
            changed = self._change_table(conn, file, table, incoming, deadline)
            added += changed[0]
            widened += changed[1]
            try:
                return self._write(
                    conn,
                    file,
                    table,
                    incoming,
                    rows,
                    deadline,
                    round_ == SCHEMA_ROUNDS,
                    added,
                    widened,
                    replaced_by,
                )
            except _TableChanged:
                continue  # rolled back: change the table again, outside the data transaction
        raise AssertionError("unreachable")

    def _begin(self, cur: psycopg.Cursor[Any], deadline: _Deadline) -> None:
        """Settings of every loader transaction."""
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        # A widening (ALTER ... TYPE text) writes old values in the session's formats:
        # pin them to the ones later loads write (ISO dates, shortest exact floats),
        # whatever the database's or the role's defaults are.
        cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        cur.execute("SET LOCAL extra_float_digits = 1")
        remaining = deadline.remaining_ms()
        if remaining is not None:
            cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(remaining)))
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(remaining)))

    def _lock_tables(self, cur: psycopg.Cursor[Any], tables: list[str]) -> None:
        """The per-dataset advisory locks (in sorted order): loads of one dataset, their
        table changes included, run one at a time. Readers never take them."""
        for name in sorted(tables):
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"headrace:table:{self.schema}.{name}"],
            )

    def _previous(self, cur: psycopg.Cursor[Any], file: FileToLoad) -> tuple[Any, ...] | None:
        """The key's ``_files`` row: (object_version, table_name, uploaded_at)."""
        cur.execute(
            sql.SQL("SELECT object_version, table_name, uploaded_at FROM {}.{} WHERE object_key = %s").format(
                sql.Identifier(self.schema), sql.Identifier(FILES_TABLE)
            ),
            [file.object_key],
        )
        return cur.fetchone()

    def _change_table(
        self,
        conn: psycopg.Connection[Any],
        file: FileToLoad,
        table: str,
        incoming: list[tuple[str, LogicalType | None]],
        deadline: _Deadline,
    ) -> tuple[list[str], list[str]]:
        """Add the file's new columns and widen its wider ones, in a transaction of their own
        that commits before the rows are loaded: the ACCESS EXCLUSIVE lock ``ALTER TABLE``
        takes blocks every reader of the table, so it must not last through the COPY. It
        waits at most ``SCHEMA_LOCK_TIMEOUT_MS`` for queries already running (new queries
        queue behind it meanwhile), ``SCHEMA_LOCK_ATTEMPTS`` times. A new table is not made
        here: it is created with its rows. Returns the columns added and widened."""
        busy: errors.LockNotAvailable | None = None
        for attempt in range(1, SCHEMA_LOCK_ATTEMPTS + 1):
            try:
                with conn.transaction(), conn.cursor() as cur:
                    self._begin(cur, deadline)
                    existing = self._columns(cur, table)
                    plain = plan_load(table, incoming, existing, inexact_ints=file.ints_beyond_float)
                    if existing is None or not _needs_change(plain, existing):
                        return [], []
                    previous = self._previous(cur, file)
                    if previous and _is_older(file, previous[0], previous[2]):
                        return [], []  # superseded: the data transaction says so
                    self._lock_tables(cur, [table])  # waits for a load of the dataset
                    existing = self._columns(cur, table)  # as it is under the lock
                    if existing is None:
                        return [], []
                    plan = self._plan(cur, file, table, incoming, existing)
                    lock_ms = SCHEMA_LOCK_TIMEOUT_MS
                    remaining = deadline.remaining_ms()
                    if remaining is not None:
                        lock_ms = min(lock_ms, remaining)
                    cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_ms)))
                    try:
                        return self._alter(cur, plan, existing)
                    except errors.LockNotAvailable as exc:
                        raise _TableBusy(exc) from exc
            except _TableBusy as exc:
                busy = exc.reason
            if attempt < SCHEMA_LOCK_ATTEMPTS:
                _pause_before_retry(attempt, deadline)
        raise LoadTimedOut(
            f"could not change table {self.schema}.{table}: other sessions kept it locked through "
            f"{SCHEMA_LOCK_ATTEMPTS} attempts (each waits at most {SCHEMA_LOCK_TIMEOUT_MS} ms, so that "
            f"readers queued behind the change are not held longer); rolled back, to be retried"
            + (f": {_first_line(busy)}" if busy is not None else "")
        )

    def _write(
        self,
        conn: psycopg.Connection[Any],
        file: FileToLoad,
        table: str,
        incoming: list[tuple[str, LogicalType | None]],
        rows: RowsSource,
        deadline: _Deadline,
        last_round: bool,
        added: list[str],
        widened: list[str],
        replaced_by: Callable[[], str | None],
    ) -> LoadOutcome:
        """ONE transaction: delete the key's rows, COPY the file's, upsert its ``_files``
        row (creating a new dataset's table first). Raises ``_TableChanged`` (rolled back)
        when the table needs a change ``_change_table`` did not make, unless this is the
        last round: then the change is made here, holding the table's lock to the end."""
        schema = sql.Identifier(self.schema)
        with conn.transaction(), conn.cursor() as cur:
            self._begin(cur, deadline)
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"headrace:file:{self.schema}:{file.object_key}"],
            )
            previous = self._previous(cur, file)
            if previous and _is_older(file, previous[0], previous[2]):
                return LoadOutcome("superseded", table, current_version=previous[0])
            # Upload times tie within a second; the processor knows S3's order. Asked under
            # the key's lock: a newer version loaded before this point was marked replacing
            # this one before its event was sent.
            newer = replaced_by()
            if newer:
                return LoadOutcome("superseded", table, current_version=newer)
            tables = sorted({table, previous[1]} if previous else {table})
            self._lock_tables(cur, tables)
            existing = self._columns(cur, table)
            plan = self._plan(cur, file, table, incoming, existing)
            if plan.create:
                self._create(cur, plan)  # nobody reads a table that does not exist yet
            elif existing is not None and _needs_change(plan, existing):
                if not last_round:
                    raise _TableChanged()
                more = self._alter(cur, plan, existing)
                added += more[0]
                widened += more[1]
            replaced = 0
            for name in tables:
                if name == table or self._columns(cur, name) is not None:
                    cur.execute(
                        sql.SQL("DELETE FROM {}.{} WHERE {} = %s").format(
                            schema, sql.Identifier(name), sql.Identifier(OBJECT_KEY)
                        ),
                        [file.object_key],
                    )
                    replaced += max(cur.rowcount, 0)
            try:
                copied = self._copy(cur, plan, rows)
            except errors.DataError as exc:
                if isinstance(exc, errors.UntranslatableCharacter):
                    raise  # the database's encoding: said in load()
                raise LoadRejected(_refused_value(file, exc)) from exc
            except errors.ProgramLimitExceeded as exc:
                raise LoadRejected(self._row_too_big(plan, exc)) from exc
            if copied != file.row_count:
                raise LoadRejected(
                    f"the Parquet holds {copied} rows but the event announced {file.row_count}; "
                    "nothing was loaded"
                )
            self._record(cur, file, plan, copied)
        return LoadOutcome(
            "loaded",
            table,
            rows=copied,
            replaced_rows=replaced,
            columns_added=tuple(added),
            columns_widened=tuple(widened),
            nuls_removed=dict(file.nuls_removed),
        )

    def _plan(
        self,
        cur: psycopg.Cursor[Any],
        file: FileToLoad,
        table: str,
        incoming: list[tuple[str, LogicalType | None]],
        existing: dict[str, str] | None,
    ) -> LoadPlan:
        """The file's load plan. An integer column that would widen to double precision is
        first looked at (a scan, before a widening that rewrites the table anyway): one
        holding an integer a double would round becomes text instead."""
        plan = plan_load(table, incoming, existing, inexact_ints=file.ints_beyond_float)
        at_risk = [w.column for w in plan.widen if w.from_kind == "int" and w.to_kind == "float"]
        if not at_risk:
            return plan
        limit = FLOAT_EXACT_INTEGER
        cur.execute(
            sql.SQL("SELECT {} FROM {}.{}").format(
                sql.SQL(", ").join(
                    sql.SQL("coalesce(bool_or({} NOT BETWEEN {} AND {}), false)").format(
                        sql.Identifier(c), sql.Literal(-limit), sql.Literal(limit)
                    )
                    for c in at_risk
                ),
                sql.Identifier(self.schema),
                sql.Identifier(table),
            )
        )
        found = cur.fetchone() or ()
        held = {c for c, beyond in zip(at_risk, found, strict=True) if beyond}
        if not held:
            return plan
        return plan_load(
            table, incoming, existing, inexact_ints=file.ints_beyond_float, table_inexact_ints=held
        )

    def _columns(self, cur: psycopg.Cursor[Any], table: str) -> dict[str, str] | None:
        """name -> format_type of the table's columns; None when there is no such table."""
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') ORDER BY a.attnum",
            [self.schema, table],
        )
        found = cur.fetchall()
        if not found:
            return None
        return {str(name): str(kind) for name, kind in found if name is not None}

    def _create(self, cur: psycopg.Cursor[Any], plan: LoadPlan) -> None:
        table = sql.Identifier(self.schema, plan.table)
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(c.column), sql.SQL(PG_TYPES[c.target]))
            for c in plan.columns
        ]
        total = len(columns) + len(LINEAGE_COLUMNS)
        if total > MAX_TABLE_COLUMNS:
            raise LoadRejected(
                f"PostgreSQL cannot hold this file: it has {len(columns) - 1:,} columns, and with the "
                f"loader's {len(LINEAGE_COLUMNS) + 1} (_rescued_data and the lineage columns) its "
                f"table {self.schema}.{plan.table} would have {total:,}: PostgreSQL tables can have "
                f"at most {MAX_TABLE_COLUMNS} columns; nothing was loaded"
            )
        columns += [
            sql.SQL("{} text NOT NULL").format(sql.Identifier(OBJECT_KEY)),
            sql.SQL("{} text NOT NULL").format(sql.Identifier(OBJECT_VERSION)),
            sql.SQL("{} bigint").format(sql.Identifier(LINE_NUMBER)),
            sql.SQL("{} timestamptz NOT NULL DEFAULT now()").format(sql.Identifier(LOADED_AT)),
        ]
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns)))
        cur.execute(
            sql.SQL("CREATE INDEX {} ON {} ({})").format(
                sql.Identifier(index_name(plan.table, "object_key_idx")), table, sql.Identifier(OBJECT_KEY)
            )
        )

    def _alter(
        self, cur: psycopg.Cursor[Any], plan: LoadPlan, existing: dict[str, str]
    ) -> tuple[list[str], list[str]]:
        """Add the plan's columns (and lineage columns a table made by an older loader
        lacks), then widen its columns: separate statements, so a widening that runs out of
        time (it rewrites the table) is named. Returns the columns added and widened."""
        table = sql.Identifier(self.schema, plan.table)
        adds: list[sql.Composable] = [
            sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(c.column), sql.SQL(PG_TYPES[c.target]))
            for c in plan.add
        ]
        adds += [
            sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind in _LINEAGE_TYPES.items()
            if name not in existing
        ]
        if adds:
            self._check_room(cur, plan, existing, len(adds))
            cur.execute(sql.SQL("ALTER TABLE {} {}").format(table, sql.SQL(", ").join(adds)))
        widenings: list[sql.Composable] = []
        for w in plan.widen:
            column = sql.Identifier(w.column)
            using = cast_for_widening(column.as_string(cur), w.from_kind, w.to_kind)
            widenings.append(
                sql.SQL("ALTER COLUMN {} TYPE {} USING {}").format(
                    column, sql.SQL(PG_TYPES[w.to_kind]), sql.SQL(using)
                )
            )
        widened = [f"{w.column} ({w.from_kind} -> {w.to_kind})" for w in plan.widen]
        what = ", ".join(f"{plan.table}.{w}" for w in widened)  # for the errors below
        if widenings:
            try:
                cur.execute(sql.SQL("ALTER TABLE {} {}").format(table, sql.SQL(", ").join(widenings)))
            except errors.FeatureNotSupported as exc:
                # a view, rule or policy uses the column: PostgreSQL cannot change its type
                # under it, and no retry can; say which, and what the loader would have done
                statements = "; ".join(
                    sql.SQL("ALTER TABLE {} {}").format(table, statement).as_string(cur)
                    for statement in widenings
                )
                refused = exc.diag.message_primary or _first_line(exc)
                dependent = _dependent(exc.diag.message_detail or "")
                if dependent is None:
                    kind = "object that uses the column"
                    why = f"{refused} ({exc.diag.message_detail or 'PostgreSQL named no object'})"
                else:
                    name, kind = dependent
                    why = f"{name} depends on it, and PostgreSQL cannot change the type of a column a {kind} uses"
                raise LoadRejected(
                    f"cannot widen {what}: {why}. Nothing was loaded. Drop the {kind}, "
                    f"widen the column as the loader would ({statements}), create the {kind} again, then "
                    "load the file again with headrace replay --force and its key (the load is not "
                    "retried by itself: docs/warehouse-and-reports.md, Schema drift)"
                ) from exc
            except errors.QueryCanceled as exc:
                raise LoadTimedOut(
                    f"widening {what} timed out and was rolled back (it rewrites the whole table); "
                    "raise functions.loader.timeout_seconds or alter the column by hand "
                    f"(docs/warehouse-and-reports.md, Schema drift): {_first_line(exc)}"
                ) from exc
        return [c.column for c in plan.add], widened

    def _check_room(
        self, cur: psycopg.Cursor[Any], plan: LoadPlan, existing: dict[str, str], adding: int
    ) -> None:
        """Refuse, naming the table and the columns, a file whose new columns would take the
        table past PostgreSQL's column limit (which counts the columns dropped from it too):
        a table gathers the columns of every file of its dataset, so files that are narrow
        enough each can reach the limit together."""
        cur.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            [sql.Identifier(self.schema, plan.table).as_string(cur)],
        )
        row = cur.fetchone()
        used = int(row[0]) if row else len(existing)
        if used + adding <= MAX_TABLE_COLUMNS:
            return
        new = [c.column for c in plan.add]
        named = ", ".join(new[:5]) + (f" and {len(new) - 5:,} more" if len(new) > 5 else "")
        dropped = used - len(existing)
        raise LoadRejected(
            f"PostgreSQL cannot hold this file: table {self.schema}.{plan.table} already has {used:,} "
            + (
                f"columns (counting {dropped:,} dropped ones, which PostgreSQL never frees) "
                if dropped
                else "columns "
            )
            + f"from the earlier files of its dataset, and this file brings {len(new):,} more ({named}): "
            f"PostgreSQL tables can have at most {MAX_TABLE_COLUMNS} columns; nothing was loaded. Files "
            "with other columns can go in a folder of their own: another dataset, another table"
        )

    def _row_too_big(self, plan: LoadPlan, exc: errors.ProgramLimitExceeded) -> str:
        """A row COPY could not store, and what fills it. PostgreSQL keeps a row in one 8 kB
        page and moves only long variable-length values out of it: the file's numbers,
        dates, timestamps and booleans (8 bytes each, 1 for a boolean) stay in the row."""
        primary = exc.diag.message_primary or _first_line(exc)
        fixed = sum(1 for c in plan.columns if c.target in ("int", "float", "date", "timestamp", "bool"))
        return (
            f"PostgreSQL cannot hold this file: one of its rows is too big for a row of table "
            f"{self.schema}.{plan.table} ({primary}): {fixed:,} of the file's {len(plan.columns) - 1:,} "
            "columns are numbers, dates, timestamps or booleans, which PostgreSQL keeps within the "
            "row's 8 kB page (about 1,000 of them fill it; only long text moves out of it); "
            "nothing was loaded"
        )

    def _copy(self, cur: psycopg.Cursor[Any], plan: LoadPlan, rows: RowsSource) -> int:
        names = [c.column for c in plan.columns] + [OBJECT_KEY, OBJECT_VERSION, LINE_NUMBER]
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(self.schema, plan.table), sql.SQL(", ").join(map(sql.Identifier, names))
        )
        chunks = rows(plan.columns)
        with contextlib.closing(chunks), cur.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)
        return max(cur.rowcount, 0)

    def _record(self, cur: psycopg.Cursor[Any], file: FileToLoad, plan: LoadPlan, rows: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.{} AS f (object_key, object_version, dataset, table_name, source_bucket, "
                "format, row_count, schema, renamed_columns, lineage_unit, processed_bucket, parquet_key, "
                "summary_key, uploaded_at, processed_at, nuls_removed, loaded_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
                "ON CONFLICT (object_key) DO UPDATE SET "
                "object_version = excluded.object_version, dataset = excluded.dataset, "
                "table_name = excluded.table_name, source_bucket = excluded.source_bucket, "
                "format = excluded.format, row_count = excluded.row_count, schema = excluded.schema, "
                "renamed_columns = excluded.renamed_columns, lineage_unit = excluded.lineage_unit, "
                "processed_bucket = excluded.processed_bucket, parquet_key = excluded.parquet_key, "
                "summary_key = excluded.summary_key, uploaded_at = excluded.uploaded_at, "
                "processed_at = excluded.processed_at, nuls_removed = excluded.nuls_removed, "
                "loaded_at = excluded.loaded_at"
            ).format(sql.Identifier(self.schema), sql.Identifier(FILES_TABLE)),
            [
                file.object_key,
                file.object_version,
                file.dataset,
                plan.table,
                file.source_bucket,
                file.format,
                rows,
                _names_jsonb(plan.schema()),
                _names_jsonb(plan.renamed()),
                file.lineage_unit,
                file.processed_bucket,
                file.parquet_key,
                file.summary_key,
                file.uploaded_at,
                file.processed_at,
                _names_jsonb(file.nuls_removed),
            ],
        )

    # ------------------------------------------------------------------ migrations
    def _migrate(self, conn: psycopg.Connection[Any], deadline: _Deadline | None = None) -> None:
        """Create the schema and the warehouse's own tables on first use (once per
        connection; concurrent loaders serialize on an advisory lock). A migration's ``ALTER
        TABLE`` waits for every transaction that has read the table, and every later reader
        queues behind it: during an upgrade, loads of the previous version hold ``_files``
        for as long as they run. So the migration waits at most ``SCHEMA_LOCK_TIMEOUT_MS``
        for its locks, ``SCHEMA_LOCK_ATTEMPTS`` times, then gives up with nothing changed
        (``LoadTimedOut``: the file is retried), instead of stalling every load behind it."""
        if self._ready is conn:
            return
        deadline = deadline or _Deadline(None)
        busy: errors.LockNotAvailable | None = None
        for attempt in range(1, SCHEMA_LOCK_ATTEMPTS + 1):
            try:
                self._apply_migrations(conn, deadline)
                self._ready = conn
                return
            except errors.LockNotAvailable as exc:  # rolled back: nothing was applied
                busy = exc
            if attempt < SCHEMA_LOCK_ATTEMPTS:
                _pause_before_retry(attempt, deadline)
        raise LoadTimedOut(
            f"could not apply the warehouse's migrations in schema {self.schema}: other sessions "
            f"(loads of a previous version still running, or queries) kept its tables locked through "
            f"{SCHEMA_LOCK_ATTEMPTS} attempts (each waits at most {SCHEMA_LOCK_TIMEOUT_MS} ms, so that "
            f"readers queued behind a change are not held longer); nothing was changed, to be retried"
            + (f": {_first_line(busy)}" if busy is not None else "")
        )

    def _apply_migrations(self, conn: psycopg.Connection[Any], deadline: _Deadline) -> None:
        """The migrations not applied yet, in order, in one transaction."""
        schema = sql.Identifier(self.schema)
        with conn.transaction(), conn.cursor() as cur:
            lock_ms = SCHEMA_LOCK_TIMEOUT_MS
            remaining = deadline.remaining_ms()
            if remaining is not None:
                lock_ms = min(lock_ms, remaining)
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_ms)))
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"headrace:migrate:{self.schema}"]
            )
            # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
            # exists; a schema made by an administrator must not require it.
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (version integer PRIMARY KEY, "
                    "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(schema, sql.Identifier(MIGRATIONS_TABLE))
            )
            cur.execute(sql.SQL("SELECT version FROM {}.{}").format(schema, sql.Identifier(MIGRATIONS_TABLE)))
            applied = {int(v) for (v,) in cur.fetchall()}
            for version, description, ddl in MIGRATIONS:
                if version in applied:
                    continue
                cur.execute(sql.SQL(ddl.format(schema=schema.as_string(cur))))  # type: ignore[arg-type]
                cur.execute(
                    sql.SQL("INSERT INTO {}.{} (version, description) VALUES (%s, %s)").format(
                        schema, sql.Identifier(MIGRATIONS_TABLE)
                    ),
                    [version, description],
                )

    def close(self) -> None:
        self.connections.close()
        self._ready = None


_LINEAGE_TYPES = {
    OBJECT_KEY: "text",
    OBJECT_VERSION: "text",
    LINE_NUMBER: "bigint",
    LOADED_AT: "timestamptz NOT NULL DEFAULT now()",
}
assert tuple(_LINEAGE_TYPES) == LINEAGE_COLUMNS


class _TableBusy(Exception):
    """A table change gave up waiting for the table's lock (its transaction rolled back)."""

    def __init__(self, reason: errors.LockNotAvailable):
        super().__init__(str(reason))
        self.reason = reason


class _TableChanged(Exception):
    """The table changed between the schema and the data transactions: start over."""


def _pause_before_retry(attempt: int, deadline: _Deadline) -> None:
    """Wait before another try at locks other sessions held: longer after each, within the
    load's deadline."""
    remaining = deadline.remaining_ms()
    pause = SCHEMA_RETRY_PAUSE_SECONDS * attempt
    time.sleep(pause if remaining is None else min(pause, remaining / 1000))


class _Deadline:
    """The end of the time a load may take (a ``time.monotonic()`` value; None: no end)."""

    def __init__(self, end: float | None):
        self._end = end

    def remaining_ms(self) -> int | None:
        if self._end is None:
            return None
        left = int((self._end - time.monotonic()) * 1000)
        if left < 1:
            raise LoadTimedOut("the load ran out of time and was rolled back: no time was left for it")
        return left


def _needs_change(plan: LoadPlan, existing: dict[str, str]) -> bool:
    """Whether an existing table needs ALTER TABLE for ``plan``."""
    return bool(plan.add or plan.widen) or any(name not in existing for name in LINEAGE_COLUMNS)


def _is_older(file: FileToLoad, loaded_version: str, loaded_uploaded_at: datetime | None) -> bool:
    """Whether ``file`` is an older version of the key than the one in the warehouse."""
    if loaded_version == file.object_version:
        return False  # the same version again: reload (replace) it
    if loaded_uploaded_at is None or file.uploaded_at is None:
        return False  # no way to order them: the latest load wins
    return file.uploaded_at < loaded_uploaded_at


# SQLSTATE class 40 (transaction rollback), by the name a load failure's reason gives it
_CONFLICTS = {"40P01": "deadlock", "40001": "serialization failure"}


def _is_connection_loss(exc: psycopg.OperationalError) -> bool:
    text = str(exc).lower()
    return any(
        s in text
        for s in (
            "server closed the connection",
            "connection is lost",
            "terminating connection",
            "consuming input failed",
            "eof detected",
            "connection reset",
            "broken pipe",
            "the connection is closed",
        )
    )


def _refused_value(file: FileToLoad, exc: errors.DataError) -> str:
    """A value COPY refused (a column whose type the loader did not choose receives values
    as text, for PostgreSQL to convert), by file, column and value. PostgreSQL's ``line N``
    counts the rows of the COPY stream, which follow neither the file's lines nor its row
    order: it would send the user to the wrong line, so it is left out."""
    primary = exc.diag.message_primary or _first_line(exc)
    found = re.search(r', line \d+, column (.*?): (".*")\Z', exc.diag.context or "", re.DOTALL)
    where = f", column {found.group(1)} (value {found.group(2)})" if found else ""
    return (
        f"PostgreSQL refused a value of {file.object_key}{where}: {primary}; nothing was loaded "
        "(a column whose type was changed by hand receives values as text, which PostgreSQL "
        "converts: change the column, then load the file again with headrace replay --force "
        "and its key, or upload a corrected file under the same key; the load is not retried by itself)"
    )


# What PostgreSQL's DETAIL names when an object pins a column's type: ``rule _RETURN on view v
# depends on column "n"`` (a view), ``policy p on table t depends on column "n"``.
_DEPENDENT = re.compile(
    r'(?:rule _RETURN on )?((materialized view|view|policy|trigger|rule) .+?) depends on column "'
)


def _dependent(detail: str) -> tuple[str, str] | None:
    """The object a refused type change names in its DETAIL, and its kind: ``("view v",
    "view")``, ``("policy p on table t", "policy")``; None for another DETAIL."""
    found = _DEPENDENT.match(detail)
    return (found.group(1), found.group(2)) if found else None


def _names_jsonb(by_name: Mapping[str, Any]) -> Jsonb:
    """A ``{source column: ...}`` object for ``_files``. jsonb cannot hold NUL, which a
    JSON key may (``{"a\\u0000b": 1}``): it is written as the six characters ``\\u0000``, so
    the file still loads and the name still reads as it was."""
    return Jsonb({name.replace("\x00", "\\u0000"): value for name, value in by_name.items()})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
