"""Column type inference.

Types are chosen on a sample (the first ``sample_rows`` records) by counting, for every
candidate, how many non-null sample values its SQL conversion accepts. The full pass then
uses the very same conversion, so the sample and the file can never disagree about what a
value means. A column gets the most specific type that at least ``type_threshold`` of its
sample values fit; values that do not fit become type mismatches (kept in ``_rescued_data``).

Order of preference: bool, int, float, date, timestamp, string. Numbers written with a
leading zero (``007``, ZIP codes) stay strings so no digit is lost; so do integers too
long for ``int`` (64 bits) and for a float to hold exactly (more than 15 digits), and
decimals with more significant digits than a float holds (``123456789012345678.12``). Where the
source allows it (a CSV not delimited by commas, as spreadsheets write in locales whose
decimal separator is the comma), a float column may be written with decimal commas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

from .sqltext import ident, literal
from .summary import ColumnType

TRUE_TOKENS = ("true", "t", "yes", "y")
FALSE_TOKENS = ("false", "f", "no", "n")
DATE_FORMATS = ("%Y/%m/%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y")
TIMESTAMP_FORMATS = (
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
)


def _tokens(values: Sequence[str]) -> str:
    return ", ".join(literal(v) for v in values)


@dataclass(frozen=True)
class Conversion:
    """How raw text becomes a typed value: ``sql(v)`` is NULL where ``v`` does not fit."""

    type: ColumnType
    format: str | None
    sql: Callable[[str], str]

    @property
    def label(self) -> str:
        return f"{self.type}({self.format})" if self.format else self.type


# TRY_CAST reads more than digits as an integer: 0x1F (31), 0b101 (5), 1_000, 2E5, 1.5
# (rounded to 2). Such a value is kept as written, not silently changed (a code "0x1F" is
# not 31): only digits, a sign and spaces around them are an integer, and no leading zero
# (007 is an identifier, as in the sample: past it, the full read would have made it 7).
_INTEGER = r"\s*[+-]?(0|[1-9][0-9]*)\s*"


def _int(v: str) -> str:
    return f"CASE WHEN regexp_full_match({v}, {literal(_INTEGER)}) THEN TRY_CAST({v} AS BIGINT) END"


def _float(v: str) -> str:
    # A DOUBLE holds every integer of up to 15 digits exactly (up to 2**53, 16 digits), not
    # longer ones: a 20-digit id would silently lose its last digits, so a run of more than
    # 15 digits is not a float
    # (the strlen gate keeps the regular expression off nearly every value). A number too
    # large for a DOUBLE (1e309) is no float either: the cast makes it Infinity, which is
    # not what was written (Infinity itself, written "inf", has no e and is kept).
    # A leading zero (007.5) is no float either, as the sample has it (``_LEADING_ZERO``);
    # the gate is a comparison, not ``ascii(v) IN (...)``: DuckDB 2.0 plans a list of numbers
    # as a join, and the rows of a file read in parallel then reach the Parquet out of order.
    # The cast takes "+-5" (a tolerance, ±5) for -5: two signs are no number. A number too
    # small for a DOUBLE (1e-400) is no float either: the cast makes it 0, which is not what
    # was written (a zero is: 0e5, 0.0e-400).
    # Nor is a number with more significant digits than a double holds: the cast rounds
    # 123456789012345678.12 (money, a DECIMAL(20,2) export) to 123456789012345680 without a
    # word (``_inexact``).
    return (
        f"CASE WHEN strlen({v}) > 15 AND regexp_full_match(trim({v}), {literal(_LONG_INTEGER)}) THEN NULL "
        f"WHEN strlen({v}) > 16 AND {_inexact(v)} THEN NULL "
        f"WHEN ascii({v}) <= 48 AND regexp_matches({v}, {literal(_LEADING_ZERO)}) THEN NULL "
        f"WHEN contains({v}, '_') OR contains({v}, '+-') THEN NULL "
        f"WHEN (contains({v}, 'e') OR contains({v}, 'E') OR strlen({v}) > 300) "
        f"AND (isinf(TRY_CAST({v} AS DOUBLE)) OR (TRY_CAST({v} AS DOUBLE) = 0 "
        f"AND regexp_matches({v}, {literal(_NONZERO_MANTISSA)}))) THEN NULL "
        f"ELSE TRY_CAST({v} AS DOUBLE) END"
    )


_NONZERO_MANTISSA = r"^[^eE]*[1-9]"


def _inexact(v: str) -> str:
    """Whether number text ``v`` has digits its double does not: the double, written with as
    many significant digits as ``v`` has, reads otherwise (``123456789012345678.12`` is
    ``1.2345678901234567680e+17`` at 20 digits). Text written from a double is exact: its
    shortest form (``0.30000000000000004``, as Python, pandas, JavaScript, Java, Go and
    DuckDB write 0.1 + 0.2; the cast's text), C's ``%.17g`` (``0.10000000000000001``) and
    NumPy's ``savetxt`` default ``%.18e`` (``1.000000000000000056e-01``) are compared as
    they are; only other text pays for the digit count (5 us a value, against 0.3 us).
    Not text (NULL) is no number and not inexact. Callers gate on ``strlen(v) > 16``: a
    shorter value has at most 15 significant digits, which a double always holds (a
    16-digit integer is ``_LONG_INTEGER``), and skips even the cast to text. (DuckDB
    evaluates the conditions of a CASE lazily, not those of an AND: hence the CASEs.)"""
    double = f"TRY_CAST({v} AS DOUBLE)"
    digits = f"trim(regexp_replace({v}, '[eE].*|[^0-9]', '', 'g'), '0')"
    written_so = f"printf('%.' || greatest(strlen(d) - 1, 0) || 'e', {double})"
    its_digits = f"trim(ltrim(split_part(replace({written_so}, '.', ''), 'e', 1), '-'), '0')"
    return (
        f"CASE WHEN {double} IS NULL OR CAST({double} AS VARCHAR) = {v} "
        f"OR printf('%.17g', {double}) = {v} OR printf('%.18e', {double}) = {v} THEN false "
        f"ELSE list_transform([{digits}], lambda d: d <> {its_digits})[1] END"
    )


_LONG_INTEGER = r"[+-]?\d{16,}"
# 1,5 / -1234,5 / 1.234.567,89 / 42: a decimal comma, dots grouping thousands before it. A
# value with dots and no comma is not read this way (1.234 is 1234 with grouping, 1.234
# without): in a decimal-comma column it is a type mismatch, kept as written.
_DECIMAL_COMMA = r"[+-]?(\d+(,\d+)?|\d{1,3}(\.\d{3})+,\d+)"


# A comma before exactly three digits (1,234) is also how other locales group thousands, so a
# column is read with decimal commas only when more of its values have another number of
# decimals (1,5; 12,25) than have three: one 1,5 among US figures such as 1,234 does not
# make them 1.234.
_OTHER_DECIMALS = r",(\d{1,2}|\d{4,})\s*$"
_THREE_DECIMALS = r",\d{3}\s*$"


def decimal_comma_votes(v: str) -> tuple[str, str]:
    """SQL conditions on ``v``: a decimal-comma number that cannot be a thousands group, and
    one that could (see ``decimal_commas_win``)."""
    number = f"{_decimal_comma(v)} IS NOT NULL"
    return (
        f"({number} AND regexp_matches({v}, {literal(_OTHER_DECIMALS)}))",
        f"({number} AND regexp_matches({v}, {literal(_THREE_DECIMALS)}))",
    )


def decimal_commas_win(votes_for: int, votes_against: int) -> bool:
    return votes_for > votes_against


def _decimal_comma(v: str) -> str:
    plain = f"replace(replace(trim({v}), '.', ''), ',', '.')"
    return f"CASE WHEN regexp_full_match(trim({v}), {literal(_DECIMAL_COMMA)}) THEN {_float(plain)} END"


def _bool(v: str) -> str:
    return (
        f"CASE WHEN lower(trim({v})) IN ({_tokens(TRUE_TOKENS)}) THEN true "
        f"WHEN lower(trim({v})) IN ({_tokens(FALSE_TOKENS)}) THEN false END"
    )


# The DATE and TIMESTAMP casts take a year of any length: "05-01-25" (5 January 2025, day
# first) became the year 5, "25-01-05" the year 25, a part number "1-2-3" a date, and
# "-infinity" (PostgreSQL's) the first day of year 1. An ISO date has four digits of year:
# its first dash is its fifth character (a comparison, not a regular expression, as it is
# made on every value of a date or timestamp column).
def _four_digit_year(v: str) -> str:
    return f"strpos(ltrim({v}), '-') = 5"


def _iso_date(v: str) -> str:
    # TRY_CAST('2025-01-01 10:00' AS DATE) drops the time: a value with a time is not a date.
    # (The contains() gates also skip TRY_CAST's slow failure path for non-dates.)
    return (
        f"CASE WHEN contains({v}, '-') AND NOT contains({v}, ':') AND {_four_digit_year(v)} "
        f"THEN TRY_CAST({v} AS DATE) END"
    )


_FORMAT_PARTS = {
    "%Y": r"\d{4}",
    "%m": r"\d{1,2}",
    "%d": r"\d{1,2}",
    "%H": r"\d{1,2}",
    "%M": r"\d{2}",
    "%S": r"\d{2}",
}


def _shape(fmt: str) -> str:
    """A regular expression matching the shape of a strptime format (``%d/%m/%Y`` ->
    ``\\d{1,2}/\\d{1,2}/\\d{4}``)."""
    return "".join(_FORMAT_PARTS.get(part, re.escape(part)) for part in re.split(r"(%[A-Za-z])", fmt) if part)


def _separator_gate(fmt: str, v: str, conversion: str) -> str:
    # try_strptime is slow on the values it rejects: only try values of the right shape.
    return f"CASE WHEN regexp_full_match(trim({v}), {literal(_shape(fmt))}) THEN {conversion} END"


def _date(fmt: str) -> Callable[[str], str]:
    return lambda v: _separator_gate(fmt, v, f"CAST(try_strptime(trim({v}), {literal(fmt)}) AS DATE)")


# "10:00:00 +01:00" (a space before the offset, as git and some loggers write it) fails
# the TIMESTAMPTZ cast; without the space it reads.
_OFFSET_SPACE = "regexp_replace(trim({v}), ' ([+-]\\d)', '\\1')"


# Zone abbreviations are fixed offsets, as the tz database writes them (what `date`,
# strftime's %Z and loggers print): ICU reads PST as America/Los_Angeles (PDT in summer: an
# hour off) and knows no PDT, and reads others as Java's legacy ids: BST as Bangladesh
# (+06:00; London's British Summer Time is +01:00), AST as Alaska (Atlantic: -04:00), NST as
# Auckland (Newfoundland: -03:30). RFC 5322's US names (CST is US Central, not China) first.
FIXED_ZONES = {
    "UT": "+00:00",  # RFC 5322's; ICU knows UTC and GMT, not UT
    "EST": "-05:00",
    "EDT": "-04:00",
    "CST": "-06:00",
    "CDT": "-05:00",
    "MST": "-07:00",
    "MDT": "-06:00",
    "PST": "-08:00",
    "PDT": "-07:00",
    "AKST": "-09:00",
    "AKDT": "-08:00",
    "HST": "-10:00",
    "HDT": "-09:00",
    "AST": "-04:00",
    "ADT": "-03:00",
    "NST": "-03:30",
    "NDT": "-02:30",
    "WET": "+00:00",
    "WEST": "+01:00",
    "BST": "+01:00",
    "CET": "+01:00",
    "CEST": "+02:00",
    "EET": "+02:00",
    "EEST": "+03:00",
}
# Names writers use for more than one offset (IST: India +05:30, Ireland +01:00, Israel
# +02:00; SST: Samoa -11:00, Singapore +08:00; ACT: Acre -05:00, as the tz database wrote
# it until 2017, Australian Central +09:30, ICU's Darwin, or Canberra's territory +10:00) or
# that ICU reads as another place than the writers mean (ECT: Ecuador, ICU's Paris; ART:
# Argentina, ICU's Cairo): not guessed, the value is a type mismatch, kept as written.
AMBIGUOUS_ZONES = ("IST", "SST", "ECT", "ART", "ACT")
# a trailing abbreviation ending in T, in any case (ICU reads "pst" as "PST")
_ZONE_NAME = r" ([A-Za-z]{1,3}[Tt])$"


def _fixed_zones(v: str) -> str:
    """``v`` with a trailing zone abbreviation of ``FIXED_ZONES`` written as its offset, NULL
    for one of ``AMBIGUOUS_ZONES``; anything else unchanged."""
    name = f"upper(regexp_extract({v}, {literal(_ZONE_NAME)}, 1))"
    offsets = " ".join(f"WHEN '{zone}' THEN ' {value}'" for zone, value in FIXED_ZONES.items())
    offsets += " ".join(f" WHEN '{zone}' THEN NULL" for zone in AMBIGUOUS_ZONES)
    replaced = (
        f"substr({v}, 1, length({v}) - length({name}) - 1) || (CASE {name} {offsets} ELSE ' ' || {name} END)"
    )
    ends_in_t = f"(suffix({v}, 'T') OR suffix({v}, 't'))"  # spares the others the regular expression
    return (
        f"CASE WHEN {ends_in_t} AND regexp_matches({v}, {literal(_ZONE_NAME)}) THEN {replaced} ELSE {v} END"
    )


# An offset is at most 23:59 (RFC 3339, Python; real zones span -12:00 to +14:00): ICU
# applied "+99:99" as 100 hours 99 minutes and "+05:75" as 6:15, an instant shifted by
# garbage without a word. Such a value is a mismatch, kept as written.
_IMPOSSIBLE_OFFSET = r"[+-]((2[4-9]|[3-9]\d)(:?\d\d)?|\d\d:?[6-9]\d)$"


def _iso_timestamp(v: str) -> str:
    # ISO 8601, stored as UTC; naive values (and a Z suffix) are taken as UTC. A plain
    # TIMESTAMP cast ignores an offset and a zone name ("10:00 PST" became 10:00 UTC), so
    # values that carry one (a + or - after the minutes, or letters other than a Z) go
    # through TIMESTAMPTZ, which costs 2.5x more; a zone it does not know is a mismatch.
    # (Letters are looked for past the seconds, or past the minutes of a value without
    # seconds: the regular expression skips plain "YYYY-MM-DD HH:MM:SS" values.)
    after_minutes = f"(strlen({v}) > 19 OR (strlen({v}) > 16 AND substr({v}, 17, 1) <> ':'))"
    zone_name = f"({after_minutes} AND regexp_matches(substr({v}, 17), '[A-Ya-y]'))"
    offset = f"(contains(substr({v}, 17), '+') OR contains(substr({v}, 17), '-') OR {zone_name})"
    with_offset = _OFFSET_SPACE.format(v=_fixed_zones(f"trim({v})"))
    return (
        f"CASE WHEN NOT {_four_digit_year(v)} THEN NULL "
        f"WHEN {offset} THEN CASE WHEN regexp_matches(trim({v}), {literal(_IMPOSSIBLE_OFFSET)}) THEN NULL "
        f"ELSE timezone('UTC', TRY_CAST({with_offset} AS TIMESTAMPTZ)) END "
        f"ELSE TRY_CAST({v} AS TIMESTAMP) END"
    )


def _timestamp(fmt: str) -> Callable[[str], str]:
    return lambda v: _separator_gate(fmt, v, f"try_strptime(trim({v}), {literal(fmt)})")


# DuckDB reads dates beyond the years 0001-9999 that Python, pandas' readers, Spark and
# ISO 8601 (without an agreement between the parties) hold: year 0000 as 1 BC,
# "2024-01-01 (BC)", "01/31/0000", and an offset past either end ("0001-01-01T00:00+01:00"
# is 0000-12-31 23:00 UTC). Such a value in the Parquet could not be read by pyarrow's
# to_pylist, the summary's min showed "0001-01-01 (BC)" (not ISO 8601), and PostgreSQL
# holds year 0 as "0001-01-01 BC": it is a type mismatch, kept as written.
_YEARS = {
    "date": ("DATE '0001-01-01'", "DATE '9999-12-31'"),
    "timestamp": ("TIMESTAMP '0001-01-01 00:00:00'", "TIMESTAMP '9999-12-31 23:59:59.999999'"),
}


def _within_years(kind: str, conversion: Callable[[str], str]) -> Callable[[str], str]:
    low, high = _YEARS[kind]

    def sql(v: str) -> str:
        # the conversion is written twice; DuckDB computes it once (common subexpressions)
        typed = conversion(v)
        return f"CASE WHEN ({typed}) BETWEEN {low} AND {high} THEN ({typed}) END"

    return sql


STRING = Conversion("string", None, lambda v: v)
CANDIDATES: tuple[Conversion, ...] = (
    Conversion("bool", None, _bool),
    Conversion("int", None, _int),
    Conversion("float", None, _float),
    Conversion("date", "iso8601", _within_years("date", _iso_date)),
    *(Conversion("date", f, _within_years("date", _date(f))) for f in DATE_FORMATS),
    Conversion("timestamp", "iso8601", _within_years("timestamp", _iso_timestamp)),
    *(Conversion("timestamp", f, _within_years("timestamp", _timestamp(f))) for f in TIMESTAMP_FORMATS),
)
FLOAT = next(c for c in CANDIDATES if c.type == "float")
# Offered only where a comma cannot be a delimiter or a thousands separator written by the
# same locale (``infer_conversions(decimal_comma=True)``); after FLOAT, so a column both
# read alike (integers only) keeps the plain format.
DECIMAL_COMMA = Conversion("float", "decimal_comma", _decimal_comma)
_LEADING_ZERO = r"^\s*[+-]?0\d"


_TEMPORAL_SHAPE = r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"


def blank(v: str) -> str:
    """SQL: ``v`` is spaces, tabs or line ends alone (a fixed-width export's empty number,
    a ``CHAR`` column's NULL). Spaces around a value are no part of it in a typed column,
    so such a value is missing there, not a type mismatch; a string column keeps it as
    written. (The comparison spares nearly every value the regular expression: a CASE, as
    DuckDB may evaluate both sides of an AND.)"""
    return f"(CASE WHEN ascii({v}) <= 32 THEN regexp_full_match({v}, {literal(_BLANK)}) ELSE false END)"


_BLANK = r"\s+"
PRIMARY = tuple(c for c in CANDIDATES if c.type in ("bool", "int", "float"))
TEMPORAL = tuple(c for c in CANDIDATES if c.type in ("date", "timestamp"))


def infer_conversions(
    con: duckdb.DuckDBPyConnection,
    sample: str,
    columns: Sequence[str],
    threshold: float,
    *,
    decimal_comma: bool = False,
) -> list[Conversion | None]:
    """Choose each column's conversion from the rows of ``sample`` (SQL after FROM); None
    for a column without any value in ``sample``. ``decimal_comma`` also offers floats
    written with a decimal comma (``DECIMAL_COMMA``).

    Two aggregate queries, each over the sample's values in one column (an UNPIVOT), so
    each expression is planned once however wide the file is (binding costs ~0.3 ms per
    expression, and so per column otherwise): the first counts the non-temporal
    candidates and how many values start like a date; the second tries the date and
    timestamp formats, only on columns that look temporal."""
    if not columns:
        return []
    primary = (*PRIMARY, DECIMAL_COMMA) if decimal_comma else PRIMARY
    first = [
        f"count(*) FILTER (WHERE v IS NOT NULL AND NOT {blank('v')})",
        f"count(*) FILTER (WHERE regexp_matches(v, {literal(_LEADING_ZERO)}))",
        f"count(*) FILTER (WHERE regexp_matches(v, {literal(_TEMPORAL_SHAPE)}))",
        *(f"count({c.sql('v')})" for c in primary),
        *(f"count(*) FILTER (WHERE {vote})" for vote in decimal_comma_votes("v") if decimal_comma),
    ]
    chosen: dict[int, Conversion | None] = {}
    temporal: list[int] = []
    counts: dict[int, tuple[int, int]] = {}
    for i, row in enumerate(per_column(con, sample, columns, first)):
        non_null, leading, looks_temporal = row[:3]
        accepted, votes = row[3 : 3 + len(primary)], row[3 + len(primary) :]
        counts[i] = (non_null, leading)
        if not non_null:
            chosen[i] = None
            continue
        conversion = choose(non_null, leading, accepted, threshold, primary)
        if conversion is DECIMAL_COMMA and not decimal_commas_win(*votes):
            conversion = STRING  # 1,234 and 5,678: thousands or decimals, not guessed
        if conversion is STRING and fits(looks_temporal, non_null, threshold):
            temporal.append(i)
        chosen[i] = conversion
    if temporal:
        second = [f"count({c.sql('v')})" for c in TEMPORAL]
        for i, row in zip(
            temporal, per_column(con, sample, [columns[i] for i in temporal], second), strict=True
        ):
            chosen[i] = choose(*counts[i], row, threshold, TEMPORAL)
    return [chosen[i] for i in range(len(columns))]


def per_column(
    con: duckdb.DuckDBPyConnection, sample: str, columns: Sequence[str], aggregates: Sequence[str]
) -> list[tuple[int, ...]]:
    """``aggregates`` (over the value ``v``) for each of ``columns`` of ``sample``, in the
    order of ``columns``; zeros for a column without any value (UNPIVOT drops NULLs)."""
    on = ", ".join(ident(c) for c in columns)
    rows = con.execute(
        f"SELECT name, {', '.join(aggregates)} FROM "
        f"(UNPIVOT (SELECT {on} FROM {sample}) ON {on} INTO NAME name VALUE v) GROUP BY name"
    ).fetchall()
    found = {row[0]: tuple(row[1:]) for row in rows}
    return [found.get(c, (0,) * len(aggregates)) for c in columns]


def fits(accepted: int, non_null: int, threshold: float) -> bool:
    """Whether ``accepted`` of ``non_null`` values is enough for a type (exact at the
    boundary: 18 of 20 is 90%, although 0.9 * 20 is 18.000000000000004 in floats)."""
    return accepted * 10**9 >= round(threshold * 10**9) * non_null


def choose(
    non_null: int,
    leading_zeros: int,
    accepted: Sequence[int],
    threshold: float,
    candidates: Sequence[Conversion] = CANDIDATES,
) -> Conversion:
    """The most specific of ``candidates`` (in order) that enough values fit; among
    formats of one type, the one most values fit."""
    if non_null == 0:
        return STRING
    best: tuple[int, Conversion] | None = None
    for conversion, ok in zip(candidates, accepted, strict=True):
        if leading_zeros and conversion.type in ("int", "float"):
            continue
        if best is not None and conversion.type != best[1].type:
            break  # a more specific type already qualified
        if fits(ok, non_null, threshold) and (best is None or ok > best[0]):
            best = (ok, conversion)
    return best[1] if best else STRING
