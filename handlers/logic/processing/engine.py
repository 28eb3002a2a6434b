"""The processing pipeline: one raw file in, typed Parquet and a Summary out.

    text file --(Source)--> ordered VARCHAR records --sample--> inferred conversions
      --COPY (convert, redact PII, rescue misfits)--> Parquet --SQL over Parquet--> statistics

The whole file is read once by a streaming COPY; statistics come from a second, columnar
read of the Parquet just written (a few for a very wide file). DuckDB bounds memory with
``memory_limit`` and spills to the scratch directory beyond it, so memory does not grow
with file size.
"""

from __future__ import annotations

import errno
import math
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from handlers.logic import duckdb_process
from handlers.logic.layout import PARTITION_KEY

from . import deadline as time_limit
from . import textfile
from .errors import OutOfMemory, OutOfScratchSpace, OutOfTime, UnprocessableFile
from .formats import detect_format, unique_names
from .inference import (
    DECIMAL_COMMA,
    FLOAT,
    STRING,
    Conversion,
    blank,
    decimal_comma_votes,
    decimal_commas_win,
    fits,
    infer_conversions,
    per_column,
)
from .logs import FIELD_ALIASES
from .options import ProcessingOptions
from .pii import REDACTED_PREFIX, PiiRule, PiiRuleSet, as_written_by_duckdb
from .sources import (
    LONG_VALUE_LINES,
    CsvSource,
    JsonSource,
    LogSource,
    NdjsonSource,
    Rejects,
    Source,
    drop_csv_rejects,
)
from .sqltext import first_row, ident, json_pointer, literal
from .summary import (
    ColumnStats,
    DuplicateRows,
    Example,
    Lineage,
    LogStats,
    MalformedRow,
    MalformedRows,
    MissingValues,
    QualityIssues,
    Summary,
    TypeMismatch,
)

RESCUED = "_rescued_data"
# One query computes a file's statistics, up to _ONE_QUERY_COLUMNS exact distinct counts
# (the fastest: alternated runs, 20 columns took 26-29 ms one way, 29-35 ms split). A wider
# file's are split over several scans of the Parquet, because one query's aggregates can
# exhaust DuckDB's memory limit however few rows there are: each exact DISTINCT builds its
# own hash table (a few MB), and beside a DISTINCT the other aggregates cost memory too.
# One query of 50 columns' statistics failed at a 160 MB limit, of 300 at 1,061 MB (the
# default function's), of 2,000 at any. The duplicate count (a DISTINCT over a hash of
# every column) then runs alone: beside other DISTINCTs it failed at 160 MB.
_ONE_QUERY_COLUMNS = 32
_AGGREGATES_PER_QUERY = 400
_DISTINCT_PER_QUERY = 16
_EXAMPLE_TEXT = 200
_REDACT_WINDOW = 20 * _EXAMPLE_TEXT
_ERROR_LEVELS = (
    "ERROR",
    "ERR",
    "FATAL",
    "CRITICAL",
    "CRIT",
    "SEVERE",
    "ALERT",
    "EMERGENCY",
    "EMERG",
    "PANIC",
    "DPANIC",  # zap's: a panic in development, an error in production
)
_WARN_LEVELS = ("WARN", "WARNING")
# the log fields and their names in JSON records: those a log line's fields take too
# (logs.FIELD_ALIASES), so a record gets the same log_stats in a .log and in a .jsonl
_LOG_FIELDS = {
    field: (field, *(alias for alias, name in FIELD_ALIASES.items() if name == field))
    for field in ("level", "response_time_ms", "user_id", "endpoint", "status_code")
}


def process_file(
    path: Path,
    *,
    file_name: str | None = None,
    options: ProcessingOptions | None = None,
    parquet_path: Path | None = None,
    deadline: float | None = None,
) -> Summary:
    """Process one local file. Raises ``UnprocessableFile`` for input that cannot succeed,
    ``OutOfTime`` when processing is still running at ``deadline`` (a
    ``time.monotonic()`` value; see ``deadline.py``), ``OutOfMemory`` when DuckDB's
    memory limit is too small for the file, and ``OutOfScratchSpace`` when the disk is."""
    options = options or ProcessingOptions()
    started = time.perf_counter()
    file_name = file_name or path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnprocessableFile(f"cannot read the file: {exc.strerror or exc}") from exc
    with tempfile.TemporaryDirectory(prefix="headrace-", dir=options.temp_dir) as tmp:
        work = Path(tmp)
        con = connect(options)
        try:
            with time_limit.enforced(con, deadline):
                text = textfile.prepare(path, work, options.fallback_encoding)
                fmt = detect_format(file_name, text.head)
                out = parquet_path or work / "output.parquet"
                try:
                    source, result = _attempt(fmt, con, text, file_name, work, options, out)
                except duckdb.InvalidInputException as exc:
                    if fmt not in ("csv", "ndjson") or _MIXED_LINE_ENDS not in str(exc):
                        raise
                    text = textfile.lf_line_ends(text, work)
                    drop_csv_rejects(con)
                    source, result = _attempt(fmt, con, text, file_name, work, options, out)
        except duckdb.InvalidInputException as exc:
            # the reader refused the content (its message says where); retrying cannot help.
            # It may quote the file: redacted before it is clipped, as every quote of the file is
            reason = options.pii.rules.redact_text(str(exc).strip().splitlines()[0][:_REDACT_WINDOW])[0]
            raise UnprocessableFile(f"cannot parse the file: {reason[:300]}") from exc
        except duckdb.InterruptException as exc:
            raise OutOfTime(
                f"processing was stopped at its deadline, after {time.perf_counter() - started:.1f} s"
            ) from exc
        except duckdb.OutOfMemoryException as exc:
            if _SPILL_SPACE_EXHAUSTED in str(exc):  # memory was full, and then the disk
                raise _out_of_scratch_space(options) from exc
            limit = options.memory_limit or "its default, 80 % of the machine's"
            raise OutOfMemory(f"processing needed more memory than DuckDB's limit ({limit})") from exc
        except (duckdb.IOException, OSError) as exc:
            if getattr(exc, "errno", None) != errno.ENOSPC and _DISK_FULL not in str(exc):
                raise
            raise _out_of_scratch_space(options) from exc
        finally:
            con.close()
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    log_stats = None
    if result.log_counts is not None:
        log_stats = LogStats(**result.log_counts, processing_time_ms=elapsed_ms, file_size_bytes=size)
    return Summary(
        file_name=file_name,
        format=fmt,
        encoding=text.encoding + (" (gzip)" if text.compressed else ""),
        row_count=result.rows,
        column_count=len(result.schema),
        schema_=result.schema,
        statistics=result.statistics,
        quality_issues=result.quality,
        pii_redactions=result.pii,
        log_stats=log_stats,
        dialect=source.dialect,
        warnings=text.warnings + result.warnings,
        processing_time_ms=elapsed_ms,
        file_size_bytes=size,
        lineage=result.lineage,
    )


# DuckDB's messages when its spill files, or a file it writes, fill the disk
_SPILL_SPACE_EXHAUSTED = "max_temp_directory_size"
_DISK_FULL = "No space left on device"


def _out_of_scratch_space(options: ProcessingOptions) -> OutOfScratchSpace:
    return OutOfScratchSpace(
        f"the scratch space filled up ({scratch_space(options.temp_dir)}): the file, its decompressed "
        "copy, DuckDB's spill files and the Parquet did not fit"
    )


def scratch_space(directory: Path | str | None) -> str:
    """``directory`` (default: the system's temp dir) and its file system's size."""
    directory = directory or tempfile.gettempdir()
    return f"{directory}, {shutil.disk_usage(directory).total / 2**20:,.0f} MB"


# DuckDB's CSV reader (NDJSON's lines too) fails so when CRLF and LF line ends are mixed; rare, so the file is
# rewritten only then, rather than scanned for it every time.
_MIXED_LINE_ENDS = "state machine reached an invalid state"


def _attempt(fmt: str, con, text: textfile.TextFile, file_name: str, work: Path, options, out: Path):
    source = _open_source(fmt, con, text, file_name, work, options)
    return source, _Pipeline(con, source, options).run(out)


def connect(options: ProcessingOptions) -> duckdb.DuckDBPyConnection:
    return duckdb_process.cursor(
        preserve_insertion_order=True,
        autoinstall_known_extensions=False,
        temp_directory=str(Path(options.temp_dir or tempfile.gettempdir()) / "headrace-duckdb-spill"),
        # DuckDB plans an aggregate with several DISTINCTs (the statistics query: up to one
        # per column, plus duplicate rows) as one subquery per DISTINCT, joined; the join-order
        # search over them cost 15 ms of a small file's 25 ms query. These queries have no
        # join of their own, so the order given is the right one.
        disabled_optimizers="join_order",
        threads=options.threads,
        memory_limit=options.memory_limit,
    )


def _open_source(fmt: str, con, text: textfile.TextFile, file_name: str, work: Path, options) -> Source:
    if fmt == "csv":
        return CsvSource(con, text.path, text.head, file_name, options.null_tokens, work, options.pii.rules)
    if fmt == "ndjson":
        return NdjsonSource(con, text.path)
    if fmt == "json":
        return JsonSource(con, text.path, text.head, work, options.pii.rules)
    return LogSource(con, text.path, work)


@dataclass
class _Result:
    rows: int
    schema: dict[str, Any]
    statistics: dict[str, ColumnStats]
    quality: QualityIssues
    pii: dict[str, dict[str, int]]
    log_counts: dict[str, Any] | None
    lineage: Lineage
    warnings: list[str]


class _Pipeline:
    def __init__(self, con: duckdb.DuckDBPyConnection, source: Source, options: ProcessingOptions):
        self.con = con
        self.source = source
        self.options = options
        self.rules: PiiRuleSet = options.pii.rules
        self.inputs = source.relation_columns
        # a column of the file named like the layout's partition key would meet the key's own
        # column in every reader that takes partitions from the path (layout.PARTITION_KEY)
        self.names = unique_names(source.columns, reserved=(RESCUED, PARTITION_KEY))
        self.hinted: dict[str, PiiRule | None] = {n: self.rules.rule_for_column(n) for n in self.names}
        self.unsampled: list[int] = []  # columns the type sample holds no value of (_infer)
        self.member_names: list[str] = []  # of nested values, a column hint claims (_copy)
        self.notes: list[str] = []  # warnings from _infer
        written = source.written_columns or source.columns
        renamed = [
            f"{old!r} (column {i}) -> {new!r}"
            for i, (old, new) in enumerate(zip(written, self.names, strict=True), start=1)
            if unicodedata.normalize("NFC", old) != new  # the composed form is the same name
        ]
        if renamed:  # the Parquet, the warehouse and queries know them by the new names
            self.notes.append(
                "columns renamed (a name repeated, case aside, blank or reserved): " + ", ".join(renamed)
            )

    # ---------------------------------------------------------------- orchestration
    def run(self, out: Path) -> _Result:
        conversions = self._infer()
        warnings = [*self.source.warnings, *self.notes]
        self.member_names = self._nested_member_names()
        rows = self._copy(conversions, out)
        rejects = self.source.rejects(self.options.max_examples)
        self._check_malformed(rows, rejects)
        lineage = Lineage(unit=self.source.unit, first=self.source.first, skipped=rejects.positions)
        if rejects.lines - rows - len(rejects.positions) - (self.source.first - 1) >= LONG_VALUE_LINES:
            warnings += self._long_quoted_values(out, conversions, lineage)
        stats = self._aggregate(out, conversions, rows)
        widened = self._widen(out, conversions, stats, rows)
        if widened != conversions:
            changed = [
                f"{n} ({a.type} -> {b.type})"
                for n, a, b in zip(self.names, conversions, widened, strict=True)
                if a != b
            ]
            warnings.append(
                "the first rows were not representative; re-typed on the whole file: " + ", ".join(changed)
            )
            conversions = widened
            rows = self._copy(conversions, out)
            stats = self._aggregate(out, conversions, rows)
        if rows == 0:
            warnings.append("no data rows")
        if self.source.dialect is not None and DECIMAL_COMMA in conversions:
            self.source.dialect["decimal_separator"] = ","
        quality = QualityIssues(
            missing_values=self._missing(stats, conversions, rows),
            type_mismatches=self._mismatches(out, stats, conversions, rows, lineage),
            malformed_rows=self._malformed(rejects),
            duplicate_rows=self._duplicates(out, stats, lineage),
        )
        return _Result(
            rows=rows,
            schema={n: c.type for n, c in zip(self.names, conversions, strict=True)},
            statistics={
                n: self._column_stats(n, c, stats) for n, c in zip(self.names, conversions, strict=True)
            },
            quality=quality,
            pii=stats["pii"],
            log_counts=self._log_counts(out, conversions),
            lineage=lineage,
            warnings=warnings,
        )

    # ---------------------------------------------------------------- typing
    def _infer(self) -> list[Conversion]:
        sample = f"(SELECT * FROM {self.source.sample_relation()} LIMIT {int(self.options.sample_rows)})"
        inferred = infer_conversions(
            self.con,
            sample,
            self.inputs,
            self.options.type_threshold,
            decimal_comma=self.source.decimal_comma,
        )
        self._note_ambiguous_dates(sample, inferred)
        for name, c in zip(self.names, inferred, strict=True):
            rule = self.hinted[name]
            if rule is None or c is None:
                continue
            # a flag named after PII (is_mobile) holds none, nor does a date (a column
            # "email_updated"), nor, for e-mail, a number: redacting it whole lost the
            # values (one past the sample that does not fit the type is rescued, and its
            # text redacted by the patterns)
            self.hinted[name] = self.rules.rule_for_column(name, c.type)
            if self.hinted[name] is None:
                held = "only booleans" if c.type == "bool" else f"{c.type} values"
                self.notes.append(
                    f"column {name!r} is named like {rule.name} PII but holds {held}: "
                    f"kept as {c.type}, not redacted whole"
                )
        for i, rule in self._pii_valued(sample, inferred).items():
            self.hinted[self.names[i]] = rule
            self.notes.append(
                f"column {self.names[i]!r} looks like {rule.name} PII (most of its sampled values shaped like one "
                "pass the rule's check): kept as text and redacted whole"
            )
        # A column first filled after the sample (a key that NDJSON records gain late) is
        # typed on the whole file in _widen, once the statistics show it has values.
        self.unsampled = [i for i, c in enumerate(inferred) if c is None and not self.hinted[self.names[i]]]
        return [
            STRING if self.hinted[n] or c is None else c for n, c in zip(self.names, inferred, strict=True)
        ]

    def _note_ambiguous_dates(self, sample: str, inferred: Sequence[Conversion | None]) -> None:
        """Say so when dates read month first (01/03/2024: January 3, the order US files
        use) could as well be day first: no sampled day is over 12 to tell them apart."""
        month_first = [
            (i, c) for i, c in enumerate(inferred) if c is not None and (c.format or "").startswith("%m/%d/")
        ]
        for i, conversion in month_first:
            assert conversion.format is not None
            day_first = conversion.format.replace("%m/%d/", "%d/%m/", 1)
            row = per_column(
                self.con,
                sample,
                [self.inputs[i]],
                [
                    f"count(*) FILTER (WHERE NOT {blank('v')})",
                    f"count(try_strptime(trim(v), {literal(day_first)}))",
                ],
            )[0]
            if row[0] and row[0] == row[1]:
                self.notes.append(
                    f"column {self.names[i]!r}: dates read month first ({conversion.format}, as in US "
                    f"files); every sampled value reads day first too ({day_first}): no day over 12 "
                    "tells them apart"
                )

    def _pii_valued(self, sample: str, inferred: Sequence[Conversion | None]) -> dict[int, PiiRule]:
        """Number columns that hold card numbers under a name no hint matches (``payment``,
        a log's ``acct=``): their type would take them out of the reach of redaction, which
        reads text. A column is one when most of its sampled values shaped like a card (the
        rule's pattern, whole) pass the rule's check, as about one in ten random ids does.
        Each is redacted whole, like a ``card_number`` column."""
        typed = [
            i
            for i, c in enumerate(inferred)
            if c is not None and c.type in ("int", "float") and not self.hinted[self.names[i]]
        ]
        checked = [r for r in self.rules.rules if r.checksum]
        if not typed or not checked:
            return {}
        aggregates = []
        for rule in checked:
            shaped = f"regexp_full_match(trim(v), {literal(rule.pattern)})"
            passing = self.rules.sql_is_match(rule, "trim(v)")
            aggregates += [f"count(*) FILTER (WHERE {shaped})", f"count(*) FILTER (WHERE {passing})"]
        counts = per_column(self.con, sample, [self.inputs[i] for i in typed], aggregates)
        found: dict[int, PiiRule] = {}
        for i, row in zip(typed, counts, strict=True):
            for k, rule in enumerate(checked):
                if row[2 * k + 1] * 2 > row[2 * k]:
                    found[i] = rule
                    break
        return found

    def _widen(self, out: Path, conversions: list[Conversion], stats: dict, rows: int) -> list[Conversion]:
        """Types the sample got wrong, corrected on the whole file. A column whose mismatches
        exceed the threshold is widened: int to float when every misfit is a number and
        enough values are floats still (its integers of more than 15 digits are not: a
        float would round them), else string. A column the sample saw no value of is typed
        on all of its values."""
        widened = list(conversions)
        late = [i for i in self.unsampled if stats[self.names[i], "non_null"]]
        if late:
            # a second full read, in this case only; the source's rejects were counted already
            typed = infer_conversions(
                self.con,
                self.source.relation,
                [self.inputs[i] for i in late],
                self.options.type_threshold,
                decimal_comma=self.source.decimal_comma,
            )
            for i, conversion in zip(late, typed, strict=True):
                widened[i] = conversion or STRING
        for i, (name, conv) in enumerate(zip(self.names, conversions, strict=True)):
            misfits = stats["mismatch"].get(name, 0)
            converted = stats[name, "non_null"]
            if not misfits or fits(converted, converted + misfits, self.options.type_threshold):
                continue
            widened[i] = STRING
            # as a float, an int column's integers of 16 digits or more would be misfits in
            # turn (18-digit ids among fractions: half the column was rescued)
            if conv.type == "int" and fits(
                converted + misfits - self._beyond_float(out, name, stats),
                converted + misfits,
                self.options.type_threshold,
            ):
                value = _rescued(name)
                counts = [f"count(*) FILTER (WHERE {FLOAT.sql(value)} IS NULL)"]
                if self.source.decimal_comma:
                    counts.append(f"count(*) FILTER (WHERE {DECIMAL_COMMA.sql(value)} IS NULL)")
                    counts += [f"count(*) FILTER (WHERE {vote})" for vote in decimal_comma_votes(value)]
                row = first_row(
                    self.con,
                    f"SELECT {', '.join(counts)} "
                    f"FROM {_parquet(out)} WHERE json_exists({RESCUED}, {literal(json_pointer(name))})",
                )
                assert row is not None
                if not row[0]:
                    widened[i] = FLOAT
                elif self.source.decimal_comma and not row[1] and decimal_commas_win(*row[2:]):
                    widened[i] = DECIMAL_COMMA
        return widened

    def _beyond_float(self, out: Path, name: str, stats: dict) -> int:
        """How many values of int column ``name`` have more digits than a float holds
        exactly (``FLOAT`` refuses them): none when its min and max say so, else counted."""
        low, high = stats.get((name, "min")), stats.get((name, "max"))
        if (low is None or low > -_FLOAT_DIGITS_LIMIT) and (high is None or high < _FLOAT_DIGITS_LIMIT):
            return 0
        v = ident(name)
        row = first_row(
            self.con,
            f"SELECT count(*) FILTER (WHERE {v} >= {_FLOAT_DIGITS_LIMIT} OR {v} <= -{_FLOAT_DIGITS_LIMIT}) "
            f"FROM {_parquet(out)}",
        )
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- the full read
    def _nested_member_names(self) -> list[str]:
        """The names of members of nested values (``{"user": {"ssn": ...}}``) that a column
        hint claims, as DuckDB writes them in a nested value's text: a column named ``ssn``
        is redacted whole, and so is such a member's value in the text of its column."""
        records = self.source.nested_records
        query = self.rules.sql_hinted_member_names(records) if records else None
        if query is None:
            return []
        written = {as_written_by_duckdb(n) for (n,) in self.con.execute(query).fetchall()}
        return sorted(n for n in written if n is not None and self.rules.rule_for_column(n))

    def _copy(self, conversions: Sequence[Conversion], out: Path) -> int:
        """The full read: convert, redact, rescue misfits, write Parquet. Each conversion is
        computed once, in the inner projection; the outer one reuses it. (JSON records with
        a nested value are scanned once before it, for member names: _nested_member_names.)"""
        inner: list[str] = []
        outer: list[str] = []
        misfits: list[tuple[str, str, str]] = []  # (column, raw ref, typed ref)
        for i, (raw, name, conv) in enumerate(zip(self.inputs, self.names, conversions, strict=True)):
            v, raw_ref, typed_ref = ident(raw), f"r{i}", f"t{i}"
            inner.append(f"{v} AS {raw_ref}")
            rule = self.hinted[name]
            if rule is not None:
                expr = f"CASE WHEN {raw_ref} IS NOT NULL THEN {literal(rule.token)} END"
            elif conv.type == "string" and self.member_names:  # members redacted once, inside
                inner.append(f"{self.rules.sql_redact_members(v, self.member_names)} AS {typed_ref}")
                expr = self.rules.sql_redact(typed_ref)
            elif conv.type == "string":
                expr = self.rules.sql_redact(raw_ref)
            else:
                inner.append(f"{conv.sql(v)} AS {typed_ref}")
                misfits.append((name, raw_ref, typed_ref))
                expr = typed_ref
            outer.append(f"{expr} AS {ident(name)}")
        rescued = "CAST(NULL AS VARCHAR)"
        if misfits:
            # a blank value (spaces alone) is missing in a typed column: NULL, not rescued
            gate = " OR ".join(f"({t} IS NULL AND {r} IS NOT NULL AND NOT {blank(r)})" for _, r, t in misfits)
            entries = ", ".join(
                f"{{'k': {literal(n)}, 'v': CASE WHEN {t} IS NULL AND NOT {blank(r)} "
                f"THEN {self.rules.sql_redact_members(r, self.member_names)} END}}"
                for n, r, t in misfits
            )
            as_json = f"CAST(to_json(map_from_entries(list_filter([{entries}], lambda e: e.v IS NOT NULL))) AS VARCHAR)"
            rescued = f"CASE WHEN {gate} THEN {self.rules.sql_redact(as_json)} END"
        outer.append(f"{rescued} AS {RESCUED}")
        out.parent.mkdir(parents=True, exist_ok=True)
        query = (
            f"COPY (SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner) or '1'} FROM {self.source.relation})) "
            f"TO {literal(str(out))} (FORMAT parquet, COMPRESSION {self.options.compression})"
        )
        row = first_row(self.con, query)  # a refusal by the reader: see process_file
        return int(row[0]) if row else 0

    def _long_quoted_values(
        self, out: Path, conversions: Sequence[Conversion], lineage: Lineage
    ) -> list[str]:
        """The value spanning the most lines, when it spans ``LONG_VALUE_LINES`` or more: a
        quote left open and closed by a stray one far below reads every line between them
        into one value, which nothing else would reveal. Run only when the file's lines
        outnumber its records by that much."""
        texts = [n for n, c in zip(self.names, conversions, strict=True) if c.type == "string"]
        if not texts:
            return []
        spans = [f"length({ident(n)}) - length(replace({ident(n)}, chr(10), '')) + 1" for n in texts]
        row = first_row(
            self.con,
            f"SELECT {', '.join(f'max({s}), arg_max(file_row_number, {s})' for s in spans)} "
            f"FROM read_parquet({literal(str(out))}, file_row_number=true)",
        )
        assert row is not None
        lines, row_index, name = max(
            ((row[2 * i] or 0, row[2 * i + 1], n) for i, n in enumerate(texts)), key=lambda t: t[0]
        )
        if lines < LONG_VALUE_LINES:
            return []
        return [
            f"the quoted value in column {name!r} of {lineage.unit} {lineage.position(int(row_index))} "
            f"spans {lines:,} lines: if a quote there is missing or stray, those lines are records "
            "read as one value"
        ]

    def _check_malformed(self, rows: int, rejects: Rejects) -> None:
        if rows == 0 and not rejects.positions and self.source.sampled_records:
            # DuckDB's CSV reader returns nothing at all after some malformed headers (a
            # quoted name followed by more text: "Q1" sales), where a first look found records
            raise UnprocessableFile(
                f"the CSV reader read no rows, though the first lines hold {self.source.sampled_records} "
                f"records: check the quotes on line {self.source.first - 1 or 1} (a quoted value "
                'followed by more text, such as "Q1" sales, stops the reader)'
            )
        total = rows + rejects.malformed
        if total and rejects.malformed / total > self.options.max_malformed_ratio:
            where = ""
            if rejects.examples:
                pos, error, _ = rejects.examples[0]
                where = f"; first at {self.source.unit} {pos}: {error}"
            raise UnprocessableFile(
                f"{rejects.malformed} of {total} records are malformed{where} "
                f"(more than {self.options.max_malformed_ratio:.0%}: the file is not valid {self._format_name()})"
            )

    def _format_name(self) -> str:
        return type(self.source).__name__.removesuffix("Source").upper()

    # ---------------------------------------------------------------- statistics
    def _aggregate(self, out: Path, conversions: Sequence[Conversion], rows: int) -> dict:
        """All per-column aggregates, the PII counts and the duplicate count: one scan, or
        a few for a wide file (``_AGGREGATES_PER_QUERY``)."""
        exact = rows <= self.options.exact_distinct_max_rows
        exprs: list[tuple[Any, str]] = []
        distinct: list[tuple[Any, str]] = []
        for name, conv in zip(self.names, conversions, strict=True):
            v = ident(name)
            exprs.append(((name, "non_null"), f"count({v})"))
            if exact:
                distinct.append(((name, "distinct"), f"count(DISTINCT {v})"))
            else:
                exprs.append(((name, "distinct"), f"approx_count_distinct({v})"))
            if conv.type == "int":
                exprs += [
                    ((name, "min"), f"min({v})"),
                    ((name, "max"), f"max({v})"),
                    ((name, "avg"), f"avg({v})"),
                ]
            elif conv.type == "float":
                # over finite values: JSON (and DynamoDB) have no infinity, and an average
                # with one in it says nothing; the infinities are counted instead
                finite = f"FILTER (WHERE isfinite({v}))"
                exprs += [
                    ((name, "min"), f"min({v}) {finite}"),
                    ((name, "max"), f"max({v}) {finite}"),
                    ((name, "avg"), f"avg({v}) {finite}"),
                    ((name, "non_finite"), f"count(*) FILTER (WHERE NOT isfinite({v}))"),
                ]
            elif conv.type in ("date", "timestamp"):
                # in microseconds, a timestamp's precision: the average of equal values is that value
                avg = f"make_timestamp(CAST(avg(epoch_us(CAST({v} AS TIMESTAMP))) AS BIGINT))"
                if conv.type == "date":
                    avg = f"CAST({avg} AS DATE)"
                exprs += [((name, "min"), f"min({v})"), ((name, "max"), f"max({v})"), ((name, "avg"), avg)]
            elif conv.type == "bool":
                exprs += [
                    ((name, "true_count"), f"count(*) FILTER (WHERE {v})"),
                    ((name, "false_count"), f"count(*) FILTER (WHERE NOT {v})"),
                ]
            else:
                exprs += [
                    ((name, "min_length"), f"min(length({v}))"),
                    ((name, "max_length"), f"max(length({v}))"),
                ]
                if self.rules:
                    exprs.append(
                        (
                            (name, "redacted"),
                            f"count(*) FILTER (WHERE contains({v}, {literal(REDACTED_PREFIX)}))",
                        )
                    )
        everything = ", ".join([*(ident(n) for n in self.names), RESCUED])
        exprs.append((("rescued",), f"count({RESCUED})"))
        duplicates = (("duplicates",), f"count(*) - count(DISTINCT hash({everything}))")
        if len(exprs) <= _AGGREGATES_PER_QUERY and len(distinct) <= _ONE_QUERY_COLUMNS:
            batches = [[*exprs, *distinct, duplicates]]
        else:
            batches = [
                *_chunks(exprs, _AGGREGATES_PER_QUERY),
                *_chunks(distinct, _DISTINCT_PER_QUERY),
                [duplicates],
            ]
        stats: dict[Any, Any] = {}
        for batch in batches:
            row = first_row(self.con, f"SELECT {', '.join(e for _, e in batch)} FROM {_parquet(out)}")
            assert row is not None
            stats.update(zip((k for k, _ in batch), row, strict=True))
        for name, conv in zip(self.names, conversions, strict=True):
            average = stats.get((name, "avg"))
            if conv.type == "float" and average is not None and math.isinf(average):
                # finite values whose sum overflows (1.7e308 twice): average them scaled by a
                # power of two, which is exact, rather than report infinity (not JSON)
                v = ident(name)
                row = first_row(
                    self.con,
                    f"SELECT avg({v} * {_AVG_SCALE}) FILTER (WHERE isfinite({v})) / {_AVG_SCALE} FROM {_parquet(out)}",
                )
                stats[name, "avg"] = row[0] if row else None
        stats["rows"] = rows
        stats["exact_distinct"] = exact
        stats["pii"] = self._pii_per_rule(out, stats)
        stats["mismatch"] = {}
        if stats[("rescued",)]:
            stats["mismatch"] = dict(
                self.con.execute(
                    f"SELECT k, count(*) FROM (SELECT unnest(json_keys({RESCUED})) AS k FROM {_parquet(out)} "
                    f"WHERE {RESCUED} IS NOT NULL) GROUP BY k"
                ).fetchall()
            )
        return stats

    def _column_stats(self, name: str, conv: Conversion, stats: dict) -> ColumnStats:
        def get(key: str) -> Any:
            return stats.get((name, key))

        values: dict[str, Any] = {
            "null_count": stats["rows"] - (get("non_null") or 0),
            "distinct_count": int(get("distinct") or 0),
        }
        if not stats["exact_distinct"]:
            values["distinct_count_approximate"] = True
        if conv.type in ("int", "float", "date", "timestamp"):
            # min and max are values of the column, every digit kept; the average is computed
            for key in ("min", "max", "avg"):
                values[key] = _json_scalar(get(key), computed=key == "avg")
            if conv.type == "int" and values["avg"] is not None:
                values["avg"] = round(float(values["avg"]), 6)
            if get("non_finite"):
                values["non_finite_count"] = get("non_finite")
        elif conv.type == "bool":
            values["true_count"], values["false_count"] = get("true_count"), get("false_count")
        else:
            values["min_length"], values["max_length"] = get("min_length"), get("max_length")
        return ColumnStats(**values)

    def _missing(self, stats: dict, conversions: Sequence[Conversion], rows: int) -> dict[str, MissingValues]:
        missing: dict[str, MissingValues] = {}
        for name in self.names:
            count = rows - stats[name, "non_null"] - stats["mismatch"].get(name, 0)
            if count > 0:
                missing[name] = MissingValues(count=count, percentage=_percent(count, rows))
        return missing

    def _mismatches(
        self, out: Path, stats: dict, conversions, rows: int, lineage: Lineage
    ) -> dict[str, TypeMismatch]:
        result: dict[str, TypeMismatch] = {}
        for name, conv in zip(self.names, conversions, strict=True):
            count = stats["mismatch"].get(name, 0)
            if not count:
                continue
            examples = self.con.execute(
                f"SELECT file_row_number, {_rescued(name)} FROM read_parquet({literal(str(out))}, file_row_number=true) "
                f"WHERE {RESCUED} IS NOT NULL AND json_exists({RESCUED}, {literal(json_pointer(name))}) "
                f"ORDER BY file_row_number LIMIT {self.options.max_examples}"
            ).fetchall()
            result[name] = TypeMismatch(
                expected=conv.type,
                count=count,
                percentage=_percent(count, rows),
                examples=[Example(**_location(lineage, idx), value=_clip(value)) for idx, value in examples],
            )
        return result

    def _malformed(self, rejects: Rejects) -> MalformedRows | None:
        if not rejects.malformed:
            return None
        unit = self.source.unit
        return MalformedRows(
            count=rejects.malformed,
            rows=[
                # redacted before it is clipped (no half address shown), over a window only:
                # a malformed line may be megabytes long
                MalformedRow(
                    **{unit: pos},
                    error=error,
                    text=_clip(self.rules.redact_text((text or "")[:_REDACT_WINDOW])[0]),
                )
                for pos, error, text in rejects.examples
            ],
        )

    def _duplicates(self, out: Path, stats: dict, lineage: Lineage) -> DuplicateRows | None:
        count = stats[("duplicates",)]
        if not count:
            return None
        everything = ", ".join([*(ident(n) for n in self.names), RESCUED])
        firsts = self.con.execute(
            "SELECT file_row_number FROM (SELECT file_row_number, row_number() OVER "
            f"(PARTITION BY hash({everything}) ORDER BY file_row_number) AS n "
            f"FROM read_parquet({literal(str(out))}, file_row_number=true)) WHERE n > 1 "
            f"ORDER BY file_row_number LIMIT {self.options.max_examples}"
        ).fetchall()
        return DuplicateRows(count=count, first_duplicates=[_location(lineage, idx) for (idx,) in firsts])

    def _pii_per_rule(self, out: Path, stats: dict) -> dict[str, dict[str, int]]:
        """Values redacted per column and rule: one more (small) query, only over the columns
        where ``_aggregate`` found any redaction; a hinted column is redacted whole."""
        counts: dict[str, dict[str, int]] = {}
        exprs: list[tuple[str, str, str]] = []
        for name in self.names:
            if not stats.get((name, "redacted")):
                continue
            rule = self.hinted[name]
            if rule is not None:
                counts[name] = {rule.name: stats[name, "redacted"]}
                continue
            exprs += [
                (name, r.name, f"count(*) FILTER (WHERE contains({ident(name)}, {literal(r.token)}))")
                for r in self.rules.rules
            ]
        for batch in _chunks(exprs, _AGGREGATES_PER_QUERY):
            row = first_row(self.con, f"SELECT {', '.join(e for *_, e in batch)} FROM {_parquet(out)}")
            assert row is not None
            for (name, rule_name, _), value in zip(batch, row, strict=True):
                if value:
                    counts.setdefault(name, {})[rule_name] = value
        return counts

    def _log_counts(self, out: Path, conversions: Sequence[Conversion]) -> dict[str, Any] | None:
        by_lower = {n.lower(): (n, c) for n, c in zip(self.names, conversions, strict=True)}
        found = {
            field: next((by_lower[a] for a in aliases if a in by_lower), None)
            for field, aliases in _LOG_FIELDS.items()
        }
        present = sum(v is not None for v in found.values())
        if not (isinstance(self.source, LogSource) or present >= 2):
            return None
        level, rt, user, endpoint = (found[k] for k in ("level", "response_time_ms", "user_id", "endpoint"))
        # pino and bunyan write levels as numbers: 10 trace ... 60 fatal
        lv = (
            f"coalesce({_numeric_levels(f'CAST({ident(level[0])} AS VARCHAR)')}, "
            f"upper(CAST({ident(level[0])} AS VARCHAR)))"
            if level
            else "NULL"
        )
        rt_col = ident(rt[0]) if rt is not None and rt[1].type in ("int", "float") else None
        finite = f"FILTER (WHERE isfinite({rt_col}))" if rt_col else ""
        # an endpoint is its path: /items?page=2 is /items (the field keeps the query string)
        endpoints = (
            f"count(DISTINCT split_part(CAST({ident(endpoint[0])} AS VARCHAR), '?', 1))"
            if endpoint
            else "NULL"
        )
        row = first_row(
            self.con,
            "SELECT count(*), "
            f"count(*) FILTER (WHERE {lv} IN ({', '.join(map(literal, _ERROR_LEVELS))})), "
            f"count(*) FILTER (WHERE {lv} IN ({', '.join(map(literal, _WARN_LEVELS))})), "
            f"count(*) FILTER (WHERE {lv} = 'INFO'), "
            f"{f'avg({rt_col}) {finite}, max({rt_col}) {finite}' if rt_col else 'NULL, NULL'}, "
            f"{f'count(DISTINCT {ident(user[0])})' if user else 'NULL'}, "
            f"{endpoints} "
            f"FROM {_parquet(out)}",
        )
        assert row is not None
        return {
            "line_count": row[0],
            "error_count": row[1],
            "warn_count": row[2],
            "info_count": row[3],
            "avg_response_time_ms": None if row[4] is None else round(float(row[4]), 3),
            "max_response_time_ms": None if row[5] is None else float(row[5]),
            "unique_users": row[6],
            "unique_endpoints": row[7],
        }


_NUMERIC_LEVELS = {"10": "TRACE", "20": "DEBUG", "30": "INFO", "40": "WARN", "50": "ERROR", "60": "FATAL"}


def _numeric_levels(text: str) -> str:
    cases = " ".join(f"WHEN {literal(n)} THEN {literal(name)}" for n, name in _NUMERIC_LEVELS.items())
    return f"CASE {text} {cases} END"


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _parquet(out: Path) -> str:
    return f"read_parquet({literal(str(out))})"


def _rescued(column: str) -> str:
    return f"json_extract_string({RESCUED}, {literal(json_pointer(column))})"


def _percent(count: int, total: int) -> float:
    return round(100.0 * count / total, 2) if total else 0.0


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= _EXAMPLE_TEXT else text[: _EXAMPLE_TEXT - 1] + "…"


def _location(lineage: Lineage, row_index: int) -> dict[str, int]:
    return {lineage.unit: lineage.position(row_index)}


# the smallest integer of 16 digits: FLOAT (inference._float) refuses integers this long
_FLOAT_DIGITS_LIMIT = 10**15
_AVG_SCALE = "0.5 ^ 600"  # 1.8e308 becomes 4.3e127: no sum of float rows overflows


def _json_scalar(value: Any, *, computed: bool = True) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no infinity (statistics are over finite values)
        if not computed:  # a value as read: its shortest text has no noise to drop
            return value
        # 15 significant digits (a double holds 15 exactly): drops float noise
        # (0.30000000000000004) without turning small values to 0 as a fixed number of
        # decimals did (1.7e-07 is not 0.0), or rounding epoch milliseconds; the largest
        # doubles stay as they are (1.7976931348623157e308 would round to infinity)
        rounded = float(f"{value:.15g}")
        return rounded if math.isfinite(rounded) else value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
