"""Which format a file is in, and for CSV, its dialect and header."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..layout import without_rotation
from .errors import UnprocessableFile
from .logs import looks_like_log
from .summary import FileFormat

_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".psv": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".log": "log",
}
_SNIFFED = {"", ".txt", ".dat", ".text", ".out"}
_DELIMITER_HINTS = {".tsv": "\t", ".tab": "\t", ".psv": "|"}
_DELIMITERS = (",", "\t", ";", "|")
# Excel reads and writes a first line "sep=;" that names the delimiter; it precedes the header.
_SEP_LINE = re.compile(r"\ufeff?sep=(.)\r?\n")


# logrotate's dateext: the date joins the file's suffix (app.log-20261206, or with its
# dateformat -%Y-%m-%d, app.log-2026-12-06)
_DATEEXT = re.compile(r"(\.[a-z0-9]+)-(\d{8,10}|\d{4}-\d{2}-\d{2})")


def extension(file_name: str) -> str:
    """The suffix that names the format, lower case, past ``.gz`` and a rotated log's
    number or date (``app.log.1.gz``, ``app.log.2026-12-06``, ``app.log-20261206``: ``.log``)."""
    name = PurePosixPath(file_name).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    suffix = PurePosixPath(without_rotation(name)).suffix.lower()
    dated = _DATEEXT.fullmatch(suffix)
    return dated.group(1) if dated else suffix


def readable_by_name(file_name: str) -> bool:
    """Whether ``file_name``'s suffix is one the processing core reads (or sniffs)."""
    ext = extension(file_name)
    return ext in _EXTENSIONS or ext in _SNIFFED


def detect_format(file_name: str, head: str) -> FileFormat:
    ext = extension(file_name)
    if ext in _EXTENSIONS:
        fmt = _EXTENSIONS[ext]
        if fmt == "json" and _looks_like_ndjson(head):
            return "ndjson"
        return fmt
    if not readable_by_name(file_name):
        raise UnprocessableFile(
            f"unsupported file type {ext!r}: expected .csv, .tsv, .json, .ndjson/.jsonl, .log or .txt "
            "(a rotated log: .log.1, .log.2026-12-06 or .log-20261206)"
        )
    stripped = head.lstrip()
    lines = [line for line in head.splitlines() if line.strip()][:20]
    # a log's lines may open a bracket too ("[2024-01-15 10:00:00] [INFO] ...", Apache's
    # error log): no JSON array starts so
    if stripped.startswith("[") and not looks_like_log(lines):
        return "json"
    if stripped.startswith("{"):
        return "ndjson" if _looks_like_ndjson(head) else "json"
    if looks_like_log(lines):
        return "log"
    dialect = sniff_dialect(head, file_name)
    return "csv" if dialect.columns_detected > 1 else "log"


def _looks_like_ndjson(head: str) -> bool:
    """NDJSON: the first non-blank line opens an object, and at least two of the first 20
    non-blank lines, and at least half of them, are each a complete JSON object. A broken
    first or second line (an NDJSON file cut or edited there) is one malformed line of it,
    not a reason to read the file as one JSON document, which refused it whole; a JSON
    document (pretty-printed, or records one per line inside an array) has no such lines:
    its lines are fragments, or records followed by a comma."""
    lines = [ln for ln in head.splitlines() if ln.strip()][:20]
    if len(lines) < 2 or not lines[0].lstrip().startswith("{"):
        return False
    objects = sum(map(_is_json_object, lines))
    return objects >= 2 and 2 * objects >= len(lines)


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
    except RecursionError:  # nested deeper than Python parses (DuckDB's reader judges it)
        text = line.strip()
        return text.startswith("{") and text.endswith("}")


@dataclass(frozen=True)
class CsvDialect:
    delimiter: str
    header: bool
    columns: tuple[str, ...]
    columns_detected: int
    written_columns: tuple[str, ...] = ()  # the header's names as written (columns: made unique)
    quote: str = '"'
    # lines before the header (or the first record): Excel's "sep=" line, blank lines, a
    # title block
    skip: int = 0
    sep_line: bool = False  # the first skipped line is Excel's "sep="
    title: tuple[str, ...] = ()  # the title block's records, skipped
    sampled_records: int = 0  # records the sample holds after the header (or from the first)
    # The header never closes a quote: it would swallow every line of the sample (a first
    # data record may hold a long quoted text; DuckDB's reader judges that one).
    header_unclosed: bool = False
    # the line end ("\n" or "\r\n") of the first record read (the header, or the first data
    # record) when a quoted value in it holds a line end: DuckDB's reader must then be
    # told it (see CsvSource)
    spanned_line_end: str | None = None

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "delimiter": self.delimiter,
            "quote": self.quote,
            "header": self.header,
        }
        if self.skip:
            described["skipped_lines"] = self.skip
        return described


def sniff_dialect(head: str, file_name: str = "") -> CsvDialect:
    """Pick the delimiter whose field count is the most consistent across the sample's
    records (ragged rows do not fool it), then decide whether the first record is a header.
    An Excel "sep=" first line decides the delimiter and is skipped, as are blank lines and
    a title block above the header."""
    declared = _SEP_LINE.match(head)
    if declared:
        head = head[declared.end() :]
    # Drop the last, possibly cut, record of the sample.
    sample = head[: head.rfind("\n") + 1] if "\n" in head else head
    hint = declared.group(1) if declared else _DELIMITER_HINTS.get(extension(file_name))
    best: tuple[float, int, str, list[list[str]]] | None = None
    for delimiter in (hint,) if hint else _DELIMITERS:
        records = _parse(sample, delimiter)
        counts = [len(r) for r in records if r]
        # "#" comment lines above the header do not vote (unless nothing else does)
        counts = counts[_leading_comments(records) :] or counts
        if not counts:
            continue
        width, freq = Counter(counts).most_common(1)[0]
        score = freq / len(counts) if width > 1 else 0.0
        # equally consistent: the delimiter that splits records into more fields. A sample
        # holding the header alone (a first record longer than the head: a long multi-line
        # text) ties every delimiter found in it, and ``name;price, EUR;note`` is 3 columns
        # split by ';', not 2 by ',' (every record below then refused as malformed)
        if best is None or (score, width) > best[:2]:
            best = (score, width, delimiter, records)
    if best is None:
        raise UnprocessableFile("no CSV records found")
    score, width, delimiter, records = best
    if score == 0.0:
        width = 1
        delimiter = hint or ","
        records = _parse(sample, delimiter)
    start, title = _header_position(records, width)
    first = records[start]
    header = _is_header(first) or _periods_over_values(first, records[start + 1 :])
    names = _column_names(first, width) if header else tuple(f"column_{i + 1}" for i in range(width))
    written = _written_names(first, width) if header else names
    swallowed = sum(1 for r in records if r) == 1 and sample.count("\n") > 1 and sample.count('"') % 2 == 1
    return CsvDialect(
        delimiter=delimiter,
        header=header,
        columns=names,
        columns_detected=width,
        written_columns=written,
        skip=(1 if declared else 0) + start,
        sep_line=declared is not None,
        title=tuple(delimiter.join(record) for record in title),
        sampled_records=sum(1 for r in records[start + header :] if not _blank(r)),
        header_unclosed=header and swallowed,
        spanned_line_end=_spanned_line_end(sample, start),
    )


_QUOTE_OR_NEWLINE = re.compile(r'["\n]')


def _spanned_line_end(sample: str, index: int) -> str | None:
    """The line end of record ``index`` of ``sample`` (records end at a newline outside
    quotes, as ``_parse`` counts them) when a quoted value in it holds a line end; None
    when none does."""
    quoted, record, spans = False, 0, False
    for token in _QUOTE_OR_NEWLINE.finditer(sample):
        if token.group() == '"':
            quoted = not quoted
        elif quoted:
            spans = spans or record == index
        elif record == index:
            return ("\r\n" if sample[token.start() - 1 : token.start()] == "\r" else "\n") if spans else None
        else:
            record += 1
    return None


_MAX_TITLE = 10


def _header_position(records: list[list[str]], width: int) -> tuple[int, list[list[str]]]:
    """Where the header (or the first record) is in ``records``, blank lines included (so,
    the lines to skip before it), and the title block above it if there is one. A title
    block is how reports and exports begin: up to ``_MAX_TITLE`` records with fewer fields
    than the table (a report's name, when it was run), or any number of ``#`` comment lines
    (of any other field count, or any below another), above a header of the table's full
    width. It is
    one when
    - it is all ``#`` comment lines (the table below, with a header or without, does not
      start with ``#``), or
    - the records below all have the header's width (ragged data has records of several),
      and the header names a column whose values below are all values (numbers, dates), at
      least one: the header's line is set apart from them by its types, or
    - a blank line separates it from the header, its records have at most half the table's
      fields, and rows below hold values.
    Anything else keeps the first record as the header: a short line over the data rows is
    ragged data, and over rows of text alone a header cannot be told from data (a first
    ``#`` line of the table's width is a record: a header or data written so)."""
    first = next((i for i, record in enumerate(records) if not _blank(record)), 0)
    if width < 2 or not records or len(records[first]) == width:
        return first, []
    title: list[list[str]] = []
    for i in range(first, len(records)):
        record = records[i]
        if _blank(record):
            continue
        # a "#" line of the table's width is a comment below another, else a record
        comments = all(map(_is_comment, title))
        if len(record) == width and not (comments and title and _is_comment(record)):
            if comments:  # the table starts here, with a header or without
                return i, title
            if not _is_header(record):
                break
            rows = [r for r in records[i + 1 :] if not _blank(r)]
            below = [r for r in rows if len(r) == width]
            if (len(below) == len(rows) and _types_set_apart(record, below)) or (
                _blank(records[i - 1])
                and all(len(t) <= max(1, width // 2) for t in title)
                and any(map(_has_value, below))
            ):
                return i, title
            break
        # (a block of "#" lines is a comment block however long: they do not vote on the
        # width either, so a cap would take the 11th for the header of a 1-field table)
        if (len(record) > width and not _is_comment(record)) or (
            len(title) >= _MAX_TITLE and not (comments and _is_comment(record))
        ):
            break
        title.append(record)
    return first, []


def _is_comment(record: list[str]) -> bool:
    return bool(record) and record[0].lstrip("\ufeff").startswith("#")


def _leading_comments(records: list[list[str]]) -> int:
    """How many non-empty records at the top are ``#`` comment lines (blank lines aside)."""
    n = 0
    for record in records:
        if not record:
            continue
        if not _is_comment(record):
            break
        n += 1
    return n


def _types_set_apart(header: list[str], below: list[list[str]]) -> bool:
    """A column the header names whose values below, at least one, are all values (numbers,
    dates): the header's line is set apart from the records below by its types."""
    for i, name in enumerate(header):
        cells = [r[i].strip() for r in below if r[i].strip()]
        if name.strip() and cells and all(_VALUE.fullmatch(cell) for cell in cells):
            return True
    return False


def _blank(record: list[str]) -> bool:
    return not any(cell.strip() for cell in record)


def _parse(sample: str, delimiter: str) -> list[list[str]]:
    """The sample's records, a blank line as an empty one: one per line as DuckDB counts
    lines (a quoted value spanning lines is one); those before a record Python's reader
    refuses (DuckDB's judges that one)."""
    records: list[list[str]] = []
    try:
        for record in csv.reader(io.StringIO(sample), delimiter=delimiter, quotechar='"'):
            records.append(record)
    except csv.Error:
        pass
    return records


# Python's reader refuses a value over 128 KiB by default: a first record holding a long
# quoted text (a description, an HTML body) made every delimiter find no record at all.
# Any value of a sample (the text file's head, at most textfile.MAX_HEAD) now passes. (The
# limit is the csv module's, for the whole process: raised only, never lowered.)
csv.field_size_limit(max(csv.field_size_limit(), 64 << 20))


_VALUE = re.compile(
    r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|true|false|\d{4}-\d{2}-\d{2}.*|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}.*",
    re.I,
)


def _has_value(record: list[str]) -> bool:
    return any(_VALUE.fullmatch(cell.strip()) for cell in record)


_PERIOD = re.compile(r"(19|20)\d\d|\d{4}-\d{2}(-\d{2})?")  # a year, a month or a day: 2024, 2024-01


def _periods_over_values(first: list[str], below: list[list[str]]) -> bool:
    """A pivot table's header: names, then years or dates heading columns of figures
    (``region,2022,2023,2024`` over ``north,10,20,30``). The first record's value cells are
    several distinct periods in order, and under each the records below hold values that
    are no periods (data whose first column is text and the rest years would have years
    below too)."""
    periods = [i for i, cell in enumerate(first) if _PERIOD.fullmatch(cell.strip())]
    # several, distinct and in order (2022, 2023, 2024): one number from 1900 to 2099 in a
    # first row is as likely data
    heads = [first[i].strip() for i in periods]
    ordered = (sorted(set(heads)), sorted(set(heads), reverse=True))
    if len(periods) < 2 or len(periods) == len(first) or heads not in ordered:
        return False
    if any(_has_value([cell]) for i, cell in enumerate(first) if i not in periods):
        return False
    rows = [r for r in below if len(r) == len(first) and not _blank(r)][:20]
    return bool(rows) and all(
        any(_has_value([r[i]]) and not _PERIOD.fullmatch(r[i].strip()) for r in rows) for i in periods
    )


def _is_header(first: list[str]) -> bool:
    """A header has names, not values: no numeric, boolean or date cell (blank names are
    allowed). When the data is all text too, a header is still the better guess: most CSV
    files have one."""
    return not _blank(first) and not _has_value(first)


def _written_names(first: list[str], width: int) -> tuple[str, ...]:
    return tuple(first[i].strip().lstrip("\ufeff") if i < len(first) else "" for i in range(width))


def _column_names(first: list[str], width: int) -> tuple[str, ...]:
    return tuple(unique_names(list(_written_names(first, width))))


def unique_names(names: list[str], reserved: tuple[str, ...] = ()) -> list[str]:
    """Make column names unique case-insensitively (SQL engines, Parquet readers and Glue
    fold case): a second ``id`` or ``ID`` becomes ``id_2``; a reserved name gets ``_source``;
    a blank one is ``column_N`` (N: its position). A name the file has itself is never
    taken by one made up so: ``a``, ``A``, ``a_2`` are ``a``, ``A_3``, ``a_2`` (with ``A``
    as ``a_2``, the file's own ``a_2`` was ``a_2_2``, and another file's ``a_2`` met this
    file's ``A`` in one column of the dataset). Names are in Unicode's composed form (NFC):
    ``café`` written decomposed (an ``e`` and a combining accent, as macOS writes file
    names) is the ``café`` of other files, one column in the dataset's table, not two that
    look alike."""
    reserved_lower = {r.lower() for r in reserved}
    composed = [unicodedata.normalize("NFC", written) for written in names]
    # the names that stay as written: the first of each, neither blank nor reserved
    own: dict[str, int] = {}
    for i, name in enumerate(composed):
        if name and name.lower() not in reserved_lower:
            own.setdefault(name.lower(), i)
    taken = reserved_lower | set(own)
    result = []
    for i, name in enumerate(composed):
        if name and own.get(name.lower()) == i:
            result.append(name)
            continue
        base = f"column_{i + 1}" if not name else f"{name}_source" if name.lower() in reserved_lower else name
        candidate, n = base, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result
