"""Readers: each format becomes an ordered relation of VARCHAR columns in DuckDB.

A ``Source`` exposes ``relation`` (SQL producing the data records in file order, one
VARCHAR column per field, named by ``columns``) and, once the relation has been read,
``rejects()``: the records that were consumed but could not become rows (malformed or
blank), as positions in the file. Order is preserved end to end (DuckDB keeps insertion
order), which is what lets ``Lineage`` map each output row back to its line.
"""

from __future__ import annotations

import io
import json
import mmap
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from . import deadline, logs, textfile
from .errors import UnprocessableFile
from .formats import CsvDialect, sniff_dialect
from .pii import PiiRuleSet
from .sqltext import first_row, ident, json_pointer, literal

MAX_COLUMNS = 2000
# Every file DuckDB reads is plain text (textfile.prepare decompressed a gzip one into a new
# file); left to guess from the name, DuckDB took a .csv.gz that holds plain text for gzip
# and failed with an IO error ("Input is not a GZIP stream"): a traceback the processor
# retried as if transient until the DLQ.
_PLAIN = "'none'"
# A quoted CSV value spanning this many lines is taken for a quote left open: its lines are
# counted as records lost when DuckDB refused it, and named in a warning when it was read
LONG_VALUE_LINES = 100
# DuckDB reserves a buffer of maximum_object_size (twice, when reading ahead), so it must
# stay well under the memory limit: records in an array are read one by one and may be up
# to MAX_JSON_RECORD each, and so are the records of an object's one array of them (copied
# out first); any other single-object document is read whole, sized to the file.
MAX_JSON_RECORD = 16 << 20
# Reads a text file one line per row: no quoting, a separator that cannot occur in JSON text.
_LINES = (
    "auto_detect=false, header=false, delim='\\x1f', quote='', escape='', columns={'line': 'VARCHAR'}, "
    f"compression={_PLAIN}"
)
# DuckDB's line readers (CSV; NDJSON's and log records' lines) lose a line longer than their
# buffer (32 MiB) without an error when it is the file's last, and fail with an internal
# error ("The Parallel CSV Reader currently does not support a full read") elsewhere, even
# with errors stored as rejects: a file with a line longer than this is refused before.
MAX_LINE = MAX_JSON_RECORD
# A line may be as long as a record of a JSON array; DuckDB's default limit is 2 MiB, and a
# larger one enlarges its read buffers (and memory) for every file, so only a file with a
# longer line is read again with it.
_LONG_LINES = f"max_line_size={MAX_JSON_RECORD}, buffer_size={2 * MAX_JSON_RECORD}"
_LINE_TOO_LONG = re.compile(r"CSV Error on Line: (\d+)\n[\s\S]*Maximum line size")
# the lines of a title block a warning quotes (a block of "#" comment lines may be longer)
_TITLE_QUOTED = 10


@dataclass
class Rejects:
    """Records consumed but not turned into rows: all positions, and details of a few."""

    positions: list[int] = field(default_factory=list)
    malformed: int = 0  # how many are malformed (the rest are blank, or continue a log record)
    examples: list[tuple[int, str, str]] = field(default_factory=list)  # (position, error, text)
    # the file's lines, where a record may span several (CSV: quoted values); 0 elsewhere
    lines: int = 0


class Source(ABC):
    unit: Literal["line", "record"] = "line"
    first: int = 1
    dialect: dict[str, Any] | None = None
    # whether a number may be written with a decimal comma (inference.DECIMAL_COMMA)
    decimal_comma: bool = False

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        self.con = con
        self.path = path
        self.columns: list[str] = []  # field names as found in the file (unique, to read them)
        self.written_columns: list[str] = []  # as written, where the file's differ (CSV)
        self.warnings: list[str] = []
        self.sampled_records = 0  # records a first look at the file found (CSV only)

    @property
    def relation_columns(self) -> list[str]:
        """Column names in ``relation`` (unique, safe to reference), parallel to ``columns``."""
        return self.columns

    @property
    @abstractmethod
    def relation(self) -> str:
        """SQL (usable after FROM) yielding the records, columns named as ``columns``."""

    def sample_relation(self) -> str:
        """Like ``relation`` but must not add to its rejects (used for the type sample)."""
        return self.relation

    @property
    def nested_records(self) -> str | None:
        """SQL (usable after FROM) yielding, as column ``text``, the JSON text of every record
        that holds a nested value (an object or array inside it); None for formats without."""
        return None

    @abstractmethod
    def rejects(self, max_examples: int) -> Rejects: ...


class CsvSource(Source):
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        head: str,
        file_name: str,
        null_tokens,
        workdir: Path,
        rules: PiiRuleSet,
    ):
        super().__init__(con, path)
        self._sample_path = _head_slice(path, workdir / "sample.csv", head)
        self.csv: CsvDialect = sniff_dialect(head, file_name)
        if self.csv.header and head.count("\n") <= self.csv.skip and len(head.encode()) < path.stat().st_size:
            # the columns would come from part of the header: a header-only file completed
            # with a fraction of its columns, the last name cut short; with rows, each was
            # "malformed" for having more fields than that
            raise UnprocessableFile(
                f"the header (line {self.csv.skip + 1}) is longer than {textfile.MAX_HEAD >> 20} MiB, "
                "the longest header headrace reads"
            )
        if self.csv.header_unclosed:
            raise UnprocessableFile(
                f"a quoted value in the header (line {1 + self.csv.skip}) is never closed: "
                "every line after it would be part of the header"
            )
        self.columns = list(self.csv.columns)
        self.written_columns = list(self.csv.written_columns)
        if len(self.columns) > MAX_COLUMNS:
            raise UnprocessableFile(f"too many columns: {len(self.columns)} (limit {MAX_COLUMNS})")
        if (line := textfile.first_line_longer_than(path, MAX_LINE)) is not None:
            raise UnprocessableFile(
                f"line {line} is longer than {MAX_LINE >> 20} MiB, the longest line headrace reads "
                "(a line of 2 MiB up to that is a malformed row)"
            )
        self.first = (2 if self.csv.header else 1) + self.csv.skip
        self.sampled_records = self.csv.sampled_records
        if self.csv.title:
            start = 2 if self.csv.sep_line else 1
            lines = f"line {start}" if start == self.csv.skip else f"lines {start}-{self.csv.skip}"
            self.warnings.append(
                f"a title block above the {'header' if self.csv.header else 'first record'} "
                f"was skipped ({lines}): "
                # (redacted before they are cut short: warnings reach the metadata item)
                + ", ".join(repr(_quoted_start(record, rules)) for record in self.csv.title[:_TITLE_QUOTED])
                + (
                    f" and {len(self.csv.title) - _TITLE_QUOTED} more"
                    if len(self.csv.title) > _TITLE_QUOTED
                    else ""
                )
            )
        self.dialect = self.csv.describe()
        # Spreadsheets delimit by ';' (or a tab) where the comma is the decimal separator.
        self.decimal_comma = self.csv.delimiter != "," and len(self.columns) > 1
        # A single-column file has no delimiter; use one that cannot occur in text.
        delimiter = self.csv.delimiter if len(self.columns) > 1 else "\x1f"
        columns = "{" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in self.columns) + "}"
        nulls = "[" + ", ".join(literal(t) for t in null_tokens) + "]"
        self._options = (
            f"auto_detect=false, skip={self.csv.skip}, header={str(self.csv.header).lower()}, "
            f"delim={literal(delimiter)}, "
            f"quote='\"', escape='\"', columns={columns}, nullstr={nulls}, compression={_PLAIN}"
        )
        if self.csv.spanned_line_end:
            # A quoted value of the first record holding a line end other than the file's
            # ("a\r\nb" in a file of LF lines): DuckDB takes the file's line end from it, and
            # then read no row at all after such a header, without an error, and refused
            # such a first data record (or failed as if line ends were mixed, and every CRLF
            # in values became LF). Named, the line end is the record's, and values keep theirs.
            self._options += f", new_line={literal(_NEW_LINE[self.csv.spanned_line_end])}"

    @property
    def relation(self) -> str:
        return (
            f"read_csv({literal(str(self.path))}, {self._options}, store_rejects=true, "
            f"rejects_table='{_REJECTS[0]}', rejects_scan='{_REJECTS[1]}', rejects_limit=0)"
        )

    def sample_relation(self) -> str:
        # Malformed records are set aside in a table of their own, which nothing reads: with
        # ignore_errors=true instead, DuckDB 2.0 returned no row at all after a broken quote,
        # and every column of the file was typed string.
        return (
            f"read_csv({literal(str(self._sample_path))}, {self._options}, store_rejects=true, "
            f"rejects_table='{_SAMPLE_REJECTS[0]}', rejects_scan='{_SAMPLE_REJECTS[1]}')"
        )

    def rejects(self, max_examples: int) -> Rejects:
        # With CRLF line ends, DuckDB's text of a rejected line begins with the LF of the
        # line before (a record cannot begin with a line end of its own: that is a blank line)
        rows = self.con.execute(
            "SELECT line, first(error_type::VARCHAR), first(error_message), ltrim(first(csv_line), e'\\r\\n'), "
            f"min(line_byte_position) FROM {_REJECTS[0]} GROUP BY line ORDER BY line"
        ).fetchall()
        lines, has_blank = _count_lines(self.path)
        # With one column, DuckDB reads a blank line as a row with an empty (missing) value.
        blanks = blank_lines(self.path) if has_blank and len(self.columns) > 1 else []
        # A quote opened and never closed takes every line after it into one value, which
        # DuckDB refuses at the end of the file; closed far below by a stray quote, it takes
        # the lines between into one record, which DuckDB refuses when text follows the
        # quote or the fields do not add up. Either way those lines are records lost, not
        # one, when there are LONG_VALUE_LINES of them or more (fewer: a multi-line value
        # with a defect, one record). The same error names a quoted value followed by text
        # ("x"y) on one line, after which DuckDB reads on.
        malformed = len(rows)
        spans: dict[int, str] = {}  # line -> what its record's quote took
        for line, _, _, text, start in rows:
            if "\n" not in (text or "").rstrip("\r\n") or start is None:
                continue
            lost, closed = _record_lines(self.path, int(start))
            if not closed:
                spans[int(line)] = (
                    f"a quoted value opened on this line is never closed: it and the {lost - 1:,} "
                    "lines after it could not be read"
                )
            elif lost >= LONG_VALUE_LINES:
                spans[int(line)] = (
                    f"a quoted value opened on this line closes {lost - 1:,} lines below: it and "
                    "those lines could not be read"
                )
            else:
                continue
            malformed += lost - 1
        examples = [
            (int(r[0]), spans.get(int(r[0])) or _csv_error(r[1], r[2]), r[3] or "")
            for r in rows[:max_examples]
        ]
        return Rejects(
            positions=sorted({int(r[0]) for r in rows} | {n for n in blanks if n >= self.first}),
            malformed=malformed,
            examples=examples,
            lines=lines,
        )


# DuckDB's new_line option: a line end written as its escape
_NEW_LINE = {"\n": "\\n", "\r\n": "\\r\\n"}

# The temp tables (rejects, scans) the full read and the type sample record rejects in.
_REJECTS = ("csv_rejects", "csv_reject_scans")
_SAMPLE_REJECTS = ("sample_rejects", "sample_reject_scans")


def drop_csv_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """Forget what a CSV read recorded, before the same file is read again."""
    for table in (*_REJECTS, *_SAMPLE_REJECTS):
        con.execute(f"DROP TABLE IF EXISTS {table}")


_BLANK = re.compile(rb"\n\r?\n")
_TOKENS = re.compile(rb'"|\n|[^"\n\r]+')
_QUOTES_AND_NEWLINES = re.compile(rb'["\n]')
_CHUNK = 1 << 20


def blank_lines(path: Path) -> list[int]:
    """Numbers of the empty lines DuckDB's CSV reader skips, in its numbering: a line ends
    at a newline outside quotes (a quoted value spanning lines counts once). Streams in
    chunks; ``_count_lines`` tells first whether there is an empty line at all (nearly
    every file has none)."""
    blanks: list[int] = []
    line, quoted, content = 1, False, False
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            deadline.check()
            for token in _TOKENS.finditer(chunk):
                text = token.group()
                if text == b'"':
                    quoted, content = not quoted, True  # an escaped quote ("") toggles twice
                elif text == b"\n":
                    if not quoted:
                        if not content and line > 1:
                            blanks.append(line)
                        line, content = line + 1, False
                else:
                    content = True
    return blanks


def _record_lines(path: Path, start: int) -> tuple[int, bool]:
    """The lines of the CSV record that starts at byte ``start`` (up to the first newline
    outside quotes; a doubled "" is text), and whether it ends: False when a quote is still
    open at the end of the file (its last line counts, with a newline or without)."""
    lines, quoted, last = 1, False, b""
    with path.open("rb") as f:
        f.seek(start)
        while chunk := f.read(_CHUNK):
            deadline.check()
            for token in _QUOTES_AND_NEWLINES.finditer(chunk):
                if token.group() == b'"':
                    quoted = not quoted
                elif not quoted:
                    return lines, True
                else:
                    lines += 1
            last = chunk[-1:]
    return (max(1, lines - (last == b"\n")), False) if quoted else (lines, True)


def _count_lines(path: Path) -> tuple[int, bool]:
    """The file's lines (a last one without a newline counts) and whether one is empty."""
    tail, lines, blank = b"", 0, False
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
            blank = blank or bool(_BLANK.search(tail + chunk))
            tail = chunk[-2:]
    return lines + (tail[-1:] not in (b"", b"\n")), blank


SAMPLE_ROWS_BYTES = 30_000  # lines' worth of bytes to copy for the type sample (20,000 rows + margin)
SAMPLE_MAX_BYTES = 8 << 20


def _head_slice(path: Path, target: Path, head: str) -> Path:
    """The beginning of ``path``, cut at a line end, large enough for the type sample: a
    LIMIT on the whole file would not stop DuckDB's parallel scanner early."""
    line_bytes = max(1, len(head.encode()) // max(1, head.count("\n")))
    size = min(SAMPLE_MAX_BYTES, line_bytes * SAMPLE_ROWS_BYTES)
    if path.stat().st_size <= size:
        return path
    with path.open("rb") as f:
        chunk = f.read(size)
    target.write_bytes(chunk[: chunk.rfind(b"\n") + 1])
    return target


def _csv_error(kind: str, message: str) -> str:
    found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message or "")
    if found and kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        return f"expected {found.group(1)} fields, found {found.group(2)}"
    return {
        "UNQUOTED VALUE": "a quoted value is not closed properly",
        "INVALID ENCODING": "invalid UTF-8",
        "LINE SIZE OVER MAXIMUM": "line longer than 2 MiB (DuckDB max_line_size)",
    }.get(kind, (message or kind).splitlines()[0])


class _JsonRecordsSource(Source):
    """Records held as JSON text in a numbered temp table ``json_records(pos, line, ok)``.
    Keys of every record become the columns (first-seen order)."""

    record_name = "record"  # what a line of the file read by _load_lines is, in an error

    def _load_lines(self, path: Path, what: str) -> None:
        """``_load`` each line of ``path`` as one record (NDJSON)."""

        def lines(options: str) -> str:
            # a line may begin with a byte order mark where files were joined (cat a.ndjson
            # b.ndjson, b written with one): the record was "not valid JSON", and lost
            return (
                "SELECT row_number() OVER () AS pos, "
                f"CASE WHEN starts_with(line, {_BOM}) THEN line[2:] ELSE line END AS line "
                f"FROM read_csv({literal(str(path))}, {options})"
            )

        if (line := textfile.first_line_longer_than(path, MAX_LINE)) is not None:
            raise UnprocessableFile(self._too_long(line))
        try:
            self._load(lines(_LINES), what)
        except duckdb.InvalidInputException as exc:
            if not _LINE_TOO_LONG.search(str(exc)):
                raise
            try:
                self._load(lines(f"{_LINES}, {_LONG_LINES}"), what)
            except duckdb.InvalidInputException as again:
                too_long = _LINE_TOO_LONG.search(str(again))
                if not too_long:
                    raise
                raise UnprocessableFile(self._too_long(int(too_long.group(1)))) from again

    def _too_long(self, line: int) -> str:
        return (
            f"{self.record_name} {line} is longer than {MAX_JSON_RECORD >> 20} MiB "
            "(as JSON text), the longest record headrace reads"
        )

    def _load(self, numbered_sql: str, what: str) -> None:
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE json_records AS "
            "SELECT pos, line, CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END AS ok "
            f"FROM ({numbered_sql})"
        )
        # each key, and (in the same pass) the first record that names a key twice and how
        # many records do (counted once each, at their first key)
        found = self.con.execute(
            "SELECT k, min(pos) FILTER (WHERE repeats), count(*) FILTER (WHERE repeats AND i = 1) FROM ("
            "SELECT pos, unnest(ks) AS k, generate_subscripts(ks, 1) AS i, repeats FROM ("
            "SELECT pos, ks, len(ks) <> len(list_distinct(ks)) AS repeats FROM ("
            "SELECT pos, json_keys(line) AS ks FROM json_records WHERE ok))) "
            "GROUP BY k ORDER BY min(pos), arg_min(i, pos), k"
        ).fetchall()
        self._note_repeated_keys(
            sum(n for _, _, n in found), min((p for _, p, _ in found if p is not None), default=None)
        )
        self.keys = [k for k, _, _ in found]
        # an empty key is a valid JSON name; its column is named column_N (unique_names), as a
        # CSV's empty header is
        self.columns = list(self.keys)
        self.written_columns = list(self.keys)
        if not self.columns:
            total, blank = first_row(
                self.con,
                "SELECT count(*), count(*) FILTER (WHERE line IS NULL OR trim(line) = '') FROM json_records",
            ) or (0, 0)
            if total - blank > 0:
                kind = first_row(
                    self.con,
                    f"SELECT {_KIND} FROM json_records WHERE NOT ok AND trim(line) <> '' ORDER BY pos LIMIT 1",
                )
                if not kind:
                    raise UnprocessableFile(f"no fields: every record in the {what} is an empty JSON object")
                raise UnprocessableFile(
                    f"no records: the {what} holds no JSON objects (the first is {_json_error(kind[0])})"
                )
        if len(self.columns) > MAX_COLUMNS:
            raise UnprocessableFile(f"too many distinct keys: {len(self.columns)} (limit {MAX_COLUMNS})")

    def _note_repeated_keys(self, records: int, first: int | None) -> None:
        """Warn that records name a key twice: the first value is read, and the other lost,
        where Python's and JavaScript's parsers (and PostgreSQL's jsonb) keep the last."""
        if not records or first is None:
            return
        row = first_row(self.con, f"SELECT json_keys(line) FROM json_records WHERE pos = {int(first)}")
        names = list(row[0]) if row else []
        repeated = list(dict.fromkeys(k for k in names if names.count(k) > 1))
        what = f"{self.record_name} names" if records == 1 else f"{self.record_name}s name"
        self.warnings.append(
            f"{records:,} {what} a key more than once ({self.record_name} {first}: "
            + ", ".join(repr(k) for k in repeated[:_MEMBERS_NAMED])
            + "): the first value of such a key is kept and the others are not "
            "(Python's and JavaScript's parsers keep the last)"
        )

    @property
    def relation_columns(self) -> list[str]:
        return [f"c{i}" for i in range(len(self.columns))]

    @property
    def relation(self) -> str:
        # "" is a missing value, as an empty CSV cell is: a number or date column that some
        # writer fills with "" when it has no value stays a number or date column
        cols = ", ".join(
            f"nullif(json_extract_string(line, {literal(json_pointer(key))}), '') AS {ident(alias)}"
            for key, alias in zip(self.keys, self.relation_columns, strict=True)
        )
        return f"(SELECT {cols or 'NULL AS _empty'} FROM json_records WHERE ok)"

    @property
    def nested_records(self) -> str:
        return (
            f"(SELECT line AS text FROM json_records WHERE ok AND regexp_matches(line, {literal(_NESTED)}))"
        )

    def rejects(self, max_examples: int) -> Rejects:
        rows = self.con.execute(
            f"SELECT pos, line, CASE WHEN line IS NULL OR trim(line) = '' THEN 'blank' ELSE {_KIND} END "
            "FROM json_records WHERE NOT ok ORDER BY pos"
        ).fetchall()
        malformed = [r for r in rows if r[2] != "blank"]
        return Rejects(
            positions=[int(r[0]) for r in rows],
            malformed=len(malformed),
            examples=[(int(r[0]), _json_error(r[2]), r[1]) for r in malformed[:max_examples]],
        )


_BOM = literal("\ufeff")  # a byte order mark, as a SQL literal

# a member whose value is an object or an array (or text that looks like one: a superset)
_NESTED = r":[ \t\r\n]*[\[{]"


_KIND = "CASE WHEN json_valid(line) THEN json_type(line) ELSE 'INVALID' END"
_KIND_NAMES = {
    "UBIGINT": "number",
    "BIGINT": "number",
    "DOUBLE": "number",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
}


def _json_error(kind: str) -> str:
    if kind == "INVALID":
        return "not valid JSON"
    return f"a JSON {_KIND_NAMES.get(kind, kind.lower())}, not an object"


class NdjsonSource(_JsonRecordsSource):
    record_name = "line"

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        super().__init__(con, path)
        self._load_lines(path, "file")


class JsonSource(_JsonRecordsSource):
    """A JSON document: an array of objects, an object holding exactly one array of objects
    (``{"records": [...]}``, ``{"data": [...]}``), or a single object (one record)."""

    unit = "record"

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: Path, head: str, workdir: Path, rules: PiiRuleSet
    ):
        super().__init__(con, path)
        self._workdir = workdir
        self._rules = rules  # the file's text an error quotes is redacted with them
        start = head.lstrip()[:1]
        src = literal(str(path))
        if start in _CLOSERS:
            _check_closed(path, start, rules)
        # what DuckDB is reading, to place a parse error: (file, an array or documents, where
        # that file's first byte is in this one)
        self._reading: tuple[Path, bool, int] = (path, start == "[", 0)
        try:
            if start == "[":
                self._load(
                    f"SELECT row_number() OVER () AS pos, json::VARCHAR AS line "
                    f"FROM read_json_objects({src}, format='array', compression={_PLAIN}, maximum_object_size={MAX_JSON_RECORD})",
                    "array",
                )
            elif start == "{":
                self._load_object(src)
            else:
                raise UnprocessableFile(
                    f"the JSON document is a {_json_scalar_kind(head)}, not records: "
                    "expected an array of objects, an object, or NDJSON"
                )
        except (duckdb.InterruptException, duckdb.OutOfMemoryException):
            raise  # stopped at the deadline, or out of memory: not the file's fault
        except duckdb.Error as exc:
            message = _first_line(exc)
            try:
                placed = _placed_parse_error(self.path, self._reading, message, self._rules)
            except (OSError, ValueError):  # the file gone or empty: DuckDB's words alone
                placed = None
            if placed:
                raise UnprocessableFile(placed) from exc
            message = _DUCKDB_VALUE_NUMBER.sub(lambda m: f"in record {int(m.group(1)) - 1}", message)
            # DuckDB's words may quote the record: redacted, as every quote of the file is
            raise UnprocessableFile(f"invalid JSON: {self._rules.redact_text(message)[0]}") from exc

    def _load_object(self, src: str) -> None:
        if (records := _records_member(self.path)) is not None:
            # records under one key: that array alone, copied out, is read as a stream like
            # an array document, instead of the whole object into memory (66 MB took 886 MB)
            key, start, end, others = records
            self._note_members_left_out(key, others)
            array = self._workdir / "records.json"
            _copy_range(self.path, array, start, end)
            self._reading = (array, True, start)
            self._load(
                f"SELECT row_number() OVER () AS pos, json::VARCHAR AS line FROM read_json_objects("
                f"{literal(str(array))}, format='array', compression={_PLAIN}, maximum_object_size={MAX_JSON_RECORD})",
                f"array under {key!r}",
            )
            return
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE json_doc AS SELECT row_number() OVER () AS pos, json::VARCHAR AS doc "
            f"FROM read_json_objects({src}, format='unstructured', compression={_PLAIN}, "
            f"maximum_object_size={max(MAX_JSON_RECORD, self.path.stat().st_size + 1)})"
        )
        documents = first_row(self.con, "SELECT count(*) FROM json_doc")
        if documents and documents[0] > 1:
            # objects one after the other (jq's output, pretty-printed records): each is a
            # record, as each line of NDJSON is; looking for one array inside lost the others
            self._load("SELECT pos, doc AS line FROM json_doc", "sequence of JSON documents")
            return
        # the keys whose value is an array of objects (records under "data", "items", ...)
        keys = first_row(self.con, "SELECT json_keys(doc) FROM json_doc")
        names = list(keys[0]) if keys else []
        # json_type with a list of paths parses the document once (a lambda per key copied it
        # per key: a 66 MB document ran out of a gigabyte)
        paths = [json_pointer(k) for k in names]
        firsts = [f"{p}/0" for p in paths]
        types = self.con.execute(
            "SELECT json_type(doc, ?::VARCHAR[]), json_type(doc, ?::VARCHAR[]) FROM json_doc", [paths, firsts]
        ).fetchone()
        arrays = [
            k
            for k, kind, first in zip(names, *(types or ([], [])), strict=True)
            if kind == "ARRAY" and first == "OBJECT"
        ]
        if len(arrays) == 1:
            self._note_members_left_out(arrays[0], [k for k in names if k != arrays[0]])
            path = literal(json_pointer(arrays[0]))
            self._load(
                "SELECT row_number() OVER () AS pos, line FROM "
                f"(SELECT unnest(CAST(json_extract(doc, {path}) AS JSON[]))::VARCHAR AS line FROM json_doc)",
                f"array under {arrays[0]!r}",
            )
        else:
            self._load("SELECT 1 AS pos, doc AS line FROM json_doc", "document")

    def _note_members_left_out(self, key: str, others: list[str]) -> None:
        """Warn that the members beside the records (an API page's "next" cursor, its
        "meta") are not in the output: they were left out without a word."""
        if not others:
            return
        shown = ", ".join(repr(k) for k in others[:_MEMBERS_NAMED])
        more = f" and {len(others) - _MEMBERS_NAMED} more" if len(others) > _MEMBERS_NAMED else ""
        self.warnings.append(
            f"only the records under {key!r} were read: the object's other "
            f"{'member' if len(others) == 1 else 'members'} ({shown}{more}) "
            f"{'is' if len(others) == 1 else 'are'} not kept"
        )


# the members beside an object's records a warning names
_MEMBERS_NAMED = 10

_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # a string's text after its opening quote
_STRUCTURE = re.compile(rb'["\[\]{}]')
_NON_SPACE = re.compile(rb"\S")


def _json_structure(
    data: mmap.mmap, pos: int, pattern: re.Pattern[bytes] = _STRUCTURE
) -> Iterator[tuple[int, int, int | None]]:
    """The characters of ``pattern`` in the JSON text ``data`` from ``pos`` on, as (offset,
    byte, end), strings skipped whole: a string is one, at its opening quote, its ``end``
    just past its closing quote (None: never closed, and the last); any other's end is the
    next byte. Mapped, never read into memory; the deadline is checked as it goes."""
    steps = 0
    while found := pattern.search(data, pos):
        steps += 1
        if steps % 100_000 == 0:
            deadline.check()
        i = found.start()
        c = data[i]
        if c == 0x22:  # '"'
            rest = _STRING_REST.match(data, i + 1)
            end = None if rest is None else rest.end()
            yield i, c, end
            if end is None:
                return
            pos = end
        else:
            yield i, c, i + 1
            pos = i + 1


def _records_member(path: Path) -> tuple[str, int, int, list[str]] | None:
    """(key, start, end, others) of the one member of the file's object whose value is an
    array of objects, by byte offsets of the array, and the names of the object's other
    members; None when the file holds more than one document,
    or the object no such member or several. One scan of the file (mapped, not read into
    memory), skipping strings whole."""
    arrays: list[tuple[bytes, int, int]] = []
    depth = documents = 0
    key = (0, 0)  # the last string at depth 1: a member's name
    opened, of_objects = 0, False  # where the member's value opened, whether records
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for i, c, end in _json_structure(data, 0):
            if c == 0x22:  # '"'
                if end is None:
                    return None  # a string never closed: DuckDB's reader will say where
                if depth == 1:
                    key = (i + 1, end - 1)
                continue
            if c in b"[{":
                depth += 1
                documents += depth == 1
                if depth == 2:  # a member's value: an array whose first element is an object?
                    first = _NON_SPACE.search(data, i + 1)
                    of_objects = c == 0x5B and first is not None and first.group() == b"{"
                    opened = i
            else:
                depth -= 1
                if depth == 1 and of_objects:
                    arrays.append((data[key[0] : key[1]], opened, i + 1))
        if documents != 1 or len(arrays) != 1:
            return None
        name, start, end = arrays[0]
        # The rest of the document, with the array emptied, must be valid JSON too (the
        # whole read would have said where it is not); small, unless other members are big.
        if start + len(data) - end > MAX_JSON_RECORD:
            return None
        try:
            member = json.loads(b'"' + name + b'"')
            rest = json.loads(data[:start] + b"[]" + data[end:])
        except (ValueError, RecursionError):
            # the whole read names the fault (or reads a member nested deeper than Python parses)
            return None
    return member, start, end, [k for k in rest if k != member]


def _copy_range(path: Path, target: Path, start: int, end: int) -> None:
    with path.open("rb") as src, target.open("wb") as dst:
        src.seek(start)
        left = end - start
        while left and (chunk := src.read(min(left, 1 << 20))):
            dst.write(chunk)
            left -= len(chunk)


_CLOSERS = {"[": "]", "{": "}"}
# DuckDB's JSON reader counts its values from 2 in errors: the first record is "record/value 2"
_DUCKDB_VALUE_NUMBER = re.compile(r"in record/value (\d+)")


def _check_closed(path: Path, start: str, rules: PiiRuleSet) -> None:
    """A JSON document must end with the bracket closing its first one. DuckDB's reader
    took an array cut after a comma (an interrupted upload) for a complete one, and
    reported other cuts as an error in a record that does not exist. A comma before the
    closing bracket (as JavaScript and hand edits leave) was "input length is 0" in a
    record that does not exist either. The end of the file an error quotes is redacted
    with ``rules``."""
    tail = _last_bytes(path)
    closer = _CLOSERS[start]
    kind = "array" if start == "[" else "object"
    if not tail.endswith(closer.encode()):
        ending = _quoted_ending(path, rules)
        raise UnprocessableFile(
            f"the JSON {kind} is not closed: the file should end with {closer!r} but ends with "
            f"{ending!r} (a truncated upload, or text after the document)"
        )
    # outside a string (a string would close with a quote before the bracket)
    if tail[:-1].rstrip().endswith(b","):
        last = "record" if start == "[" else "member"
        raise UnprocessableFile(
            f"invalid JSON: a comma after the last {last}, before the {kind}'s closing {closer!r} at the "
            f"end of the file (JSON allows none): the file ends with {_quoted_ending(path, rules)!r}"
        )


_QUOTED_ENDING = 20  # characters of the end of a file an error quotes
_QUOTED_START = 80  # characters of a line a warning quotes


def _quoted_start(line: str, rules: PiiRuleSet) -> str:
    """The first _QUOTED_START characters of ``line``, redacted: redacted wider first, so a
    value cut by the quote is redacted whole."""
    return rules.redact_around("", line[: 16 * _QUOTED_START], _QUOTED_START)[1]


def _quoted_ending(path: Path, rules: PiiRuleSet) -> str:
    """The last _QUOTED_ENDING characters of the file before its trailing whitespace,
    redacted: read wider first, so a value cut by the quote is redacted whole."""
    wide = _last_bytes(path, 16 * _QUOTED_ENDING).decode("utf-8", errors="replace")
    return rules.redact_around(wide, "", _QUOTED_ENDING)[0]


def _last_bytes(path: Path, count: int = 20) -> bytes:
    """The last ``count`` bytes of the file before its trailing whitespace (however long)."""
    with path.open("rb") as f:
        end = f.seek(0, io.SEEK_END)
        while end > 0:
            start = max(0, end - 4096)
            f.seek(start)
            text = f.read(end - start).rstrip()
            if text:
                last = start + len(text)
                f.seek(max(0, last - count))
                return f.read(last - max(0, last - count))
            end = start
    return b""


def _json_scalar_kind(head: str) -> str:
    c = head.lstrip()[:1]
    return {'"': "string", "t": "boolean", "f": "boolean", "n": "null"}.get(
        c, "number" if c[:1].isdigit() or c == "-" else "non-JSON text"
    )


# DuckDB's JSON parse error (as _first_line leaves it): the byte, counted from 1 at the first
# character of the value, the value (counted from 2) and the reason
_DUCKDB_MALFORMED = re.compile(r"Malformed JSON, at byte (\d+) in record/value (\d+): (.+?)\.?\s*$")
_SEPARATORS = re.compile(rb'["\[\]{},]')
_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))
_QUOTED_AROUND = 40  # characters quoted each side of a parse error


def _placed_parse_error(
    source: Path, reading: tuple[Path, bool, int], message: str, rules: PiiRuleSet
) -> str | None:
    """DuckDB's parse error ``message`` by the line and column of ``source`` where it is, with
    the text around it (redacted by ``rules``); None where that cannot be told. ``reading``: the file DuckDB read
    (``source`` itself, or a copy of its bytes from an offset on) and whether it holds an
    array (else a sequence of documents)."""
    malformed = _DUCKDB_MALFORMED.match(message)
    if not malformed:
        return None
    path, array, base = reading
    byte, value = int(malformed.group(1)), int(malformed.group(2)) - 1
    reason = malformed.group(3).split(". Try ")[0]  # DuckDB's advice on its own options
    # DuckDB counts a value's bytes from its first character; where no comma follows a
    # value, it names the next value and counts from the start of the one it read, to
    # just past its end
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        starts = _value_starts(data, array, (value - 1, value))
        before = starts.get(value - 1)
        if before is not None and (value not in starts or _unseparated(data, array, before, byte, starts)):
            start, record = before, f"after record {value - 1}"
        elif value in starts:
            start, record = starts[value], f"record {value}"
        else:
            return None
        if start + byte - 1 >= len(data):
            return None
        offset = start + byte - 1
        if data[offset : offset + 1].isspace() and (found := _NON_SPACE.search(data, offset)):
            offset = found.start()  # the character where a comma should be
    line, column, text_before, text_after, more = _line_and_column(source, base + offset)
    if text_after.startswith(("//", "/*")):
        reason = "a comment (JSON has none)"
    elif reason == "input length is 0":
        # an element DuckDB found empty: between two commas, or after the last one
        reason = (
            "a comma before the array's closing ']' (JSON allows none)"
            if text_after.startswith("]")
            else "no value between two commas"
        )
    # the file's text, redacted: the message reaches logs and the metadata item
    head, tail, cut_head, cut_tail = rules.redact_around(text_before, text_after, _QUOTED_AROUND)
    quoted = ("..." if cut_head or more[0] else "") + head + tail + ("..." if cut_tail or more[1] else "")
    return f"invalid JSON at line {line}, column {column} ({record}): {reason}: {quoted!r}"


def _value_starts(data: mmap.mmap, array: bool, wanted: tuple[int, int]) -> dict[int, int]:
    """Where the values ``wanted`` (counted from 1) begin: an array's elements (split by its
    commas) or a sequence's documents (and the text after the last of them that is none);
    strings are skipped whole."""
    starts: dict[int, int] = {}
    depth, count = 0, 0
    for i, c, end in _json_structure(data, 0, _SEPARATORS):
        if count > max(wanted) or end is None:
            break
        if c == 0x22:  # '"'
            continue
        element = False
        if c in b"[{":
            depth += 1
            if depth == 1:
                count = 1 if array else count + 1  # the array opens (its first element), or a document
                element = True
        elif c in b"]}":
            depth -= 1
            if array and depth <= 0:
                # the array closed (a stray bracket in a record closes it early, as DuckDB
                # reads it): what follows is none of its elements
                break
            following = _NON_SPACE.search(data, i + 1) if not array and depth == 0 else None
            if following and following.group() not in (b"{", b"["):
                # text after a document that opens none: a value of its own, where DuckDB stops
                if count + 1 in wanted:
                    starts[count + 1] = following.start()
                break
        elif array and depth == 1:  # a comma between elements
            count += 1
            element = True
        if element and count in wanted:
            first = _NON_SPACE.search(data, i + 1 if array else i)
            if first:
                starts[count] = first.start()
    return starts


def _unseparated(data: mmap.mmap, array: bool, start: int, byte: int, starts: dict[int, int]) -> bool:
    """Whether DuckDB's ``byte`` points just past the value at ``start`` and what follows it
    there is no comma (in an array) nor the next document: a separator missing."""
    end = _value_end(data, start)
    if end is None or end != start + byte - 1:
        return False
    following = _NON_SPACE.search(data, end)
    if following is None:
        return False
    if array:
        return following.group() not in (b",", b"]")
    return following.start() not in starts.values()


def _value_end(data: mmap.mmap, start: int) -> int | None:
    """Just past the object or array that opens at ``start``; None for another value, or
    one that does not close."""
    if data[start : start + 1] not in (b"{", b"["):
        return None
    depth = 0
    for i, c, end in _json_structure(data, start):
        if end is None:
            return None
        if c == 0x22:  # '"'
            continue
        if c in b"[{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _line_and_column(path: Path, offset: int) -> tuple[int, int, str, str, tuple[bool, bool]]:
    """The line (from 1) and column (characters, from 1) of byte ``offset`` of ``path``, the
    text of its line before it and from it on, several times _QUOTED_AROUND characters each
    (so a value the quote cuts is redacted whole), and whether the line goes on beyond each
    of them; a minified document is one line of any length, so the file is read a chunk at
    a time, never a line whole."""
    newlines, line_start = 0, 0
    with path.open("rb") as f:
        done = 0
        while done < offset and (chunk := f.read(min(_CHUNK, offset - done))):
            newlines += chunk.count(b"\n")
            if (last := chunk.rfind(b"\n")) >= 0:
                line_start = done + last + 1
            done += len(chunk)
        f.seek(line_start)
        column = 1
        while (left := offset - f.tell()) > 0 and (chunk := f.read(min(_CHUNK, left))):
            column += len(chunk.translate(None, _UTF8_CONTINUATION))  # a character's first bytes
        window = 16 * _QUOTED_AROUND  # bytes: 4 x the characters quoted (a character has at most 4)
        first = max(line_start, offset - window)
        f.seek(first)
        before, after = f.read(offset - first), f.read(window)
    rest_of_line = after.split(b"\n", 1)[0]
    return (
        newlines + 1,
        column,
        before.decode("utf-8", errors="ignore"),
        rest_of_line.decode("utf-8", errors="ignore").rstrip("\r"),
        (first > line_start, len(rest_of_line) == window),
    )


def _first_line(exc: Exception) -> str:
    """DuckDB's error without its class prefix or the (scratch) file path."""
    text = str(exc).strip().splitlines()[0]
    text = re.sub(r"^[\w ]+ Error: ", "", text)
    return re.sub(r' in file "[^"]*"', "", text)[:300]


class LogSource(_JsonRecordsSource):
    """Plain-text logs, parsed line by line in Python into a JSON-lines scratch file."""

    record_name = "log record"  # a record may span lines (a stack trace)

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, workdir: Path):
        super().__init__(con, path)
        records = workdir / "log-records.ndjson"
        _fields, self._skipped, _written = logs.convert(path, records)
        self._load_lines(records, "log")

    def rejects(self, max_examples: int) -> Rejects:
        # Every line started a record or continued one, or was blank: none is malformed.
        return Rejects(positions=list(self._skipped))
