"""Plain-text logs -> records.

Each non-blank line starts one record, except in a file whose records start with an ISO
timestamp (``_joins_lines``): there a line that starts no record of its own (no time, no
upper-case level, not a JSON object nor a line of the formats below: a stack trace, a
multi-line message) continues the record above it, up to ``MAX_ENTRY_LINES`` lines and
``MAX_ENTRY_CHARS`` characters per record. Recognised shapes of a record's first line,
tried in order:

0. Kubernetes' node logs (CRI): the runtime's time and stream, then the program's line,
   read by the rules below (its own time, if any, becomes ``app_timestamp``);
1. a JSON object per line (structured logging);
2. Apache/Nginx common or combined access log, optionally followed by nginx's
   ``"$http_x_forwarded_for"``, a response time (whole milliseconds, or nginx's
   ``$request_time`` in seconds when it has a decimal point) and ``key=value`` pairs;
3. syslog: RFC 5424 (``<PRI>1 timestamp host app procid msgid [structured data] msg``) or
   RFC 3164 / BSD (``[<PRI>]Mmm dd hh:mm:ss host app[pid]: msg``, dated in the current
   year, or the previous one when that would be in the future, as Logstash does); the
   priority gives ``level`` and ``facility``;
4. Apache's error log, klog (Kubernetes; dated like BSD syslog) and Ruby's Logger;
5. ``[timestamp] [LEVEL] message`` with ``key=value`` / ``key="quoted value"`` pairs
   (logfmt) anywhere in the message (a syslog message's pairs are read too); the level
   may also come a few tokens after the timestamp, after a logger or thread name.

A record whose first line matches none of them is kept as ``{"message": text}``: nothing
is dropped.
Field names are normalised to the log contract (``level``, ``timestamp``, ``endpoint``,
``status_code``, ``response_time_ms``, ``user_id``) through ``FIELD_ALIASES``; a duration
with a unit (``duration=0.5s``, ``took=120ms``, nginx's ``rt=0.012`` in seconds) also gives
``response_time_ms``. A line of logfmt pairs only takes its ``msg`` as the message.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from . import deadline
from .errors import UnprocessableFile
from .inference import AMBIGUOUS_ZONES, FIXED_ZONES

FIELD_ALIASES: dict[str, str] = {
    "lvl": "level",
    "severity": "level",
    "log_level": "level",
    "loglevel": "level",
    "levelname": "level",
    "log.level": "level",  # Elastic Common Schema, as the other dotted names
    "ts": "timestamp",
    "time": "timestamp",
    "@timestamp": "timestamp",
    "datetime": "timestamp",
    "msg": "message",
    "path": "endpoint",
    "url": "endpoint",
    "uri": "endpoint",
    "route": "endpoint",
    "url.path": "endpoint",
    "status": "status_code",
    "http_status": "status_code",
    "http.response.status_code": "status_code",
    "statuscode": "status_code",
    "duration_ms": "response_time_ms",
    "latency_ms": "response_time_ms",
    "elapsed_ms": "response_time_ms",
    "response_ms": "response_time_ms",
    "user": "user_id",
    "userid": "user_id",
    "uid": "user_id",
    "user.id": "user_id",
}
MAX_FIELDS = 256
MAX_ENTRY_LINES = 1000
MAX_ENTRY_CHARS = 256 * 1024  # a record is one JSON line, read by DuckDB (sources._LINES)
MAX_LINE_CHARS = 16 << 20  # a longer line is no record (sources.MAX_JSON_RECORD): refused

_LEVEL_NAMES = {
    "WARNING": "WARN",
    "ERR": "ERROR",
    "CRIT": "CRITICAL",
    "EMERG": "EMERGENCY",
    # zerolog's console writer
    "TRC": "TRACE",
    "DBG": "DEBUG",
    "INF": "INFO",
    "WRN": "WARN",
    "FTL": "FATAL",
    "PNC": "PANIC",
}


def _level_name(level: str) -> str:
    """A level as log_stats counts it: upper case, one spelling (``warning``, ``WARN``)."""
    upper = level.upper()
    return _LEVEL_NAMES.get(upper, upper)


_LEVELS = (
    "TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|SEVERE|ALERT|EMERG|EMERGENCY|PANIC"
    "|DPANIC"  # zap's development panic
)
# zerolog's console names: a level only where one starts the message ("via PNC" is a bank)
_SHORT_LEVELS = "TRC|DBG|INF|WRN|FTL|PNC"
# "2024-01-15 10:00:00,123", "2024-01-15T10:00:00.5Z", "2024/01/15 10:00:00" (nginx's error
# log, Go's log package), then an offset written after a space (gunicorn: "[... +0200]") or
# a zone name, converted as in a CSV value: UTC, an abbreviation in upper case (CST is US
# Central, BST British Summer Time; IST, which is India's, Ireland's and Israel's, makes the
# time a type mismatch, kept as written: inference.AMBIGUOUS_ZONES), an Area/City of the tz
# database ("Cache/Redis" is a word of the message)
_ZONES = "|".join(sorted((*FIXED_ZONES, *AMBIGUOUS_ZONES), key=lambda z: (-len(z), z)))
_PREFIX = re.compile(
    r"^\s*\[?(?P<timestamp>\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
    r"(?: (?P<offset>[+-]\d{2}):?(?P<offset_minutes>\d{2})(?=[\]\s])"
    rf"| (?P<zone>UTC|GMT|UT|{_ZONES}"
    r"|(?:Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)(?:/[A-Za-z_+-]+)+)"
    r"(?=[\]\s]|$))?\]?(?P<rest>.*)$"
)
# A level: upper case ("ERROR"), or any case in brackets ("[error]") or before a colon
# ("Error: ..."); a plain "error" is a word of the message ("error rate computed: 0%").
_BRACKETED = rf"\[(?P<bracketed>(?i:{_LEVELS}))\]"
_UPPER = rf"(?P<upper>{_LEVELS})(?=[\s:|\]/]|$)"  # not "ERROR-PRONE"; Celery's "ERROR/MainProcess"
_LEVEL_FIRST = re.compile(
    rf"\s*(?:{_BRACKETED}|(?P<coloned>(?i:{_LEVELS})):|{_UPPER}|(?P<short>{_SHORT_LEVELS})(?=\s))[\s:|-]*"
)
# ... or a few tokens later, after a logger or thread name: Python's "- app.db - ERROR -",
# Logback's "[main] ERROR", loguru's "| ERROR |" (there "no error: all good" is no level)
_LEVEL_LATER = re.compile(rf"(?<=[\s\[|])(?:{_BRACKETED}|{_UPPER})")
_LEVEL_WITHIN = 80  # characters after the timestamp where a level is looked for
_LEVEL_START = re.compile(rf"^\[?(?:{_LEVELS})\]?(?=[\s:]|$)")
_TIMESTAMP_START = re.compile(r"^\[?\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}")
# A line that begins with a time in any common spelling starts a record (no line of a
# stack trace does): a date and a time (to the minute), basic ISO, a time alone, epoch
# seconds or milliseconds, 01/15/2024 10:00, Tomcat's 15-Jan-2024 10:00, "Jan 15 2024 10:00"
# and "Jan 15 10:00"; not a date alone, which a continued record's lines may start with (a
# result listed by day)
_TIME_START = re.compile(
    r"^\[?(?:\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}|\d{8}T\d{4}|\d{2}:\d{2}:\d{2}(?!\d)"
    r"|\d{10}(?:\d{3})?(?:\.\d+)?(?=[\s\]])|\d{1,2}/\d{1,2}/\d{2,4}[\sT]\d{1,2}:\d{2}"
    r"|\d{2}-[A-Z][a-z]{2}-\d{4}\s\d{2}:\d{2}|[A-Z][a-z]{2} [ \d]\d (?:\d{4} )?\d{2}:\d{2})"
)
_QUOTED = r'(?:[^"\\]|\\.)*'  # a quoted field's text, with \" escapes (nginx writes them)
_ACCESS = re.compile(
    r"^(?P<client_ip>\S+) \S+ (?P<user_id>\S+) \[(?P<timestamp>[^\]]+)\] "
    # the request line; "-" when the client sent none (nginx's 400s)
    # (or anything else, kept whole: a scanner's bytes "\x16\x03", an unescaped space)
    rf'"(?:(?P<method>[A-Z]+) (?P<endpoint>[^\s"]+)(?: (?P<protocol>[^\s"]*))?|-|(?P<request>{_QUOTED}))" '
    r"(?P<status_code>\d{3}) (?P<bytes>\d+|-)"
    rf'(?: "(?P<referer>{_QUOTED})" "(?P<user_agent>{_QUOTED})")?'
    # nginx's default "main" format adds "$http_x_forwarded_for"
    rf'(?: "(?P<forwarded_for>{_QUOTED})")?'
    r"(?: (?P<response_time_ms>\d+(?:\.\d+)?))?"
    # and many configurations key=value pairs (rt=0.012 upstream=...): read as logfmt
    r"(?P<pairs>(?: [\w.-]+=\S+)*)\s*$"
)
_SYSLOG_5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<data>-|(?:\[(?:[^\]\\\"]|\\.|\"(?:[^\"\\]|\\.)*\")*\])+)(?: (?P<message>.*))?$"
)
_SYSLOG_BSD = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<timestamp>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (?P<host>\S+) "
    r"(?P<app>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: ?(?P<message>.*)$"
)
# Kubernetes' node logs (CRI, containerd and CRI-O): the runtime's time, the stream, F for a
# full line or P for part of one (a line over 16 KiB, continued by the next), the line
_CRI = re.compile(
    r"^(?P<timestamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) "
    r"(?P<stream>stdout|stderr) (?P<tag>[FP])(?: (?P<message>.*))?$"
)
# syslog severities (RFC 5424, table 2) in the level names log_stats counts
_SYSLOG_LEVELS = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARN", "NOTICE", "INFO", "DEBUG")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# upper case ("info" is a word in any text), between spaces, brackets or bars, not commas
# (a CSV row "2024-01-15 10:00:00,ERROR,boom" is no log line)
_LEVEL_WORD = re.compile(rf"(?<=[\s\[|])(?:{_LEVELS})(?=[\s\]|:]|$)")
_HTTP_REQUEST = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/\S*)")
# a key starts the text or follows a space, comma or bracket: not "?" or "&" (a URL's
# query string: /items?user=alice&page=2 names no user of the log)
# a logfmt line (logrus, go-kit, Prometheus): a time or level pair, then another pair
_LOGFMT_LINE = re.compile(
    r'(?i:time|ts|timestamp|level|lvl)=(?:"(?:[^"\\]|\\.)*"|[^\s"]+) +[A-Za-z_@][\w.@-]*='
)
_LOGFMT = re.compile(r'(?<![^\s,;(\[{])([A-Za-z_@][\w.@-]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)')


# Formats with a time and a level of their own shape, each a line on its own:
# Apache's error log: [Mon Jan 15 10:00:00.123456 2024] [core:error] [pid 12] [client ...] msg
_APACHE_ERROR = re.compile(
    r"^\[(?P<timestamp>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\] "
    r"\[(?:(?P<module>[\w-]+):)?(?P<level>[a-z]+\d?)\](?: \[pid (?P<pid>\d+)[^\]]*\])?"
    r"(?: \[client (?P<client_ip>[^\]]+)\])? ?(?P<message>.*)$"
)
# klog (Kubernetes, glog): E0115 10:00:00.123456   12345 file.go:12] msg (no year)
_KLOG = re.compile(
    r"^(?P<level>[IWEF])(?P<month>\d{2})(?P<day>\d{2}) (?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s+"
    r"(?P<pid>\d+) (?P<source>[^\s\]]+)\] ?(?P<message>.*)$"
)
# Ruby's Logger: E, [2024-01-15T10:00:00.123456 #1234] ERROR -- app: msg
_RUBY = re.compile(
    r"^[A-Z], \[(?P<timestamp>\S+) #(?P<pid>\d+)\]\s+(?P<level>[A-Z]+) -- (?P<app>[^:]*): ?(?P<message>.*)$"
)
_KLOG_LEVELS = {"I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL"}


def _dated(month_day_time: str, now: datetime) -> str:
    """A time without a year (klog's ``01-15T10:00:00.1``) in the year :func:`_year_for`
    gives it, as for BSD syslog; one it gives none (``13-01``, or ``02-29`` with no leap
    year to take) is kept without one: a type mismatch, reported."""
    year = _year_for(lambda y: datetime.fromisoformat(f"{y}-{month_day_time}"), now)
    return month_day_time if year is None else f"{year}-{month_day_time}"


def _year_for(moment_in: Callable[[int], datetime], now: datetime) -> int | None:
    """The year of a log time written without one: the current year, or the previous one when
    the time would be more than a day ahead (December's lines read in January) or is no date
    this year (February 29 read the year after a leap year); None when neither year has it.
    ``moment_in(year)`` is the time in ``year`` (naive, UTC), raising ValueError when it is
    no date then."""
    try:
        if moment_in(now.year) <= now.replace(tzinfo=None) + timedelta(days=1):
            return now.year
    except ValueError:
        pass
    try:
        moment_in(now.year - 1)
    except ValueError:
        return None
    return now.year - 1


def _other_format(line: str, now: datetime | None) -> dict[str, Any] | None:
    """A line of Apache's error log, klog or Ruby's Logger, as a record; else None."""
    record: dict[str, Any]
    if m := _APACHE_ERROR.match(line):
        record = {k: v for k, v in m.groupdict().items() if v is not None}
        stamp = record["timestamp"]
        try:
            moment = datetime.strptime(
                stamp, "%a %b %d %H:%M:%S.%f %Y" if "." in stamp else "%a %b %d %H:%M:%S %Y"
            )
            record["timestamp"] = moment.isoformat()
        except ValueError:
            pass  # kept as written: a type mismatch, reported
        record["level"] = _level_name(record["level"].rstrip("0123456789"))  # trace1..trace8 too
    elif m := _KLOG.match(line):
        fields = m.groupdict()
        record = {
            "timestamp": _dated(
                f"{fields['month']}-{fields['day']}T{fields['time']}", now or datetime.now(UTC)
            ),
            "level": _KLOG_LEVELS[fields["level"]],
            "pid": fields["pid"],
            "source": fields["source"],
            "message": fields["message"],
        }
    elif m := _RUBY.match(line):
        record = {k: v for k, v in m.groupdict().items() if v}
        record["level"] = _level_name(record["level"])
    else:
        return None
    _message_fields(record, record.get("message", ""))
    return record


# formats known by the shape of a line: each such line is a log line, and starts a record
_SHAPES = (_ACCESS, _SYSLOG_5424, _SYSLOG_BSD, _APACHE_ERROR, _KLOG, _RUBY, _LOGFMT_LINE)


def looks_like_log(lines: list[str]) -> bool:
    """Whether most of ``lines`` (non-blank, from the head of a file) that start a record
    are log lines; those of a traceback, which continue one, have no say."""
    firsts = [line for line in lines if not _CONTINUATION.match(line)]
    return 2 * sum(map(looks_like_log_line, firsts)) > len(firsts) > 0


def looks_like_log_line(line: str) -> bool:
    """An access-log or syslog line, one that starts with a timestamp and names a level
    (Python's "2024-01-15 10:00:00,123 - app - INFO - ..."), or with Python logging's
    time and text: commas in such lines are no reason to read a text file as CSV."""
    text = _ANSI.sub("", line).strip()
    if any(rx.match(text) for rx in _SHAPES):
        return True
    return bool(_ASCTIME.match(text) or (_TIMESTAMP_START.match(text) and _LEVEL_WORD.search(text)))


def _canonical(key: str) -> str:
    key = key.strip()
    return FIELD_ALIASES.get(key.lower(), key)


def _access_time(value: str) -> str:
    try:
        return datetime.strptime(value, "%d/%b/%Y:%H:%M:%S %z").isoformat()
    except ValueError:
        return value


def _syslog(line: str, now: datetime | None) -> dict[str, Any] | None:
    m = _SYSLOG_5424.match(line) or _SYSLOG_BSD.match(line)
    if not m:
        return None
    fields = m.groupdict()
    record: dict[str, Any] = {}
    if fields["pri"] is not None:
        facility, severity = divmod(int(fields["pri"]), 8)
        record["level"], record["facility"] = _SYSLOG_LEVELS[severity], facility
    if m.re is _SYSLOG_5424:
        if fields["timestamp"] != "-":  # the NILVALUE: the sender had no clock
            record["timestamp"] = fields["timestamp"]
    else:
        record["timestamp"] = _bsd_time(fields["timestamp"], now or datetime.now(UTC))
    for key in ("host", "app", "pid", "msgid"):
        if fields.get(key) not in (None, "-"):
            record[key] = fields[key]
    message = (fields["message"] or "").removeprefix("\ufeff")  # RFC 5424's mark of UTF-8 text
    data = fields.get("data")
    _message_fields(record, message if data in (None, "-") else f"{data} {message}")
    # no priority (/var/log/syslog): the program's own level, in its text
    if "level" not in record and (
        level := _LEVEL_FIRST.match(message) or _LEVEL_LATER.search(message, 0, _LEVEL_WITHIN)
    ):
        record["level"] = _level_name(next(g for g in level.groups() if g))
    record["message"] = message
    return record


def _bsd_time(value: str, now: datetime) -> str:
    """A BSD syslog time has no year: :func:`_year_for` gives it one. A time that is no date
    in either year (Feb 29 with no leap year to take) is kept as written: a type mismatch."""
    written = " ".join(value.split())

    def moment_in(year: int) -> datetime:
        return datetime.strptime(f"{year} {written}", "%Y %b %d %H:%M:%S")

    year = _year_for(moment_in, now)
    return value if year is None else moment_in(year).isoformat()


def _message_fields(record: dict[str, Any], message: str) -> None:
    """Add the ``key=value`` pairs of ``message``, and an HTTP request's method and path."""
    for key, value in _LOGFMT.findall(message):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        name = _canonical(key)
        if name == "level":
            value = _level_name(value)
        elif name == "response_time_ms":
            value = _milliseconds(key, value) or value  # "n/a" stays as written
        elif key.lower() in _DURATION_KEYS and (ms := _milliseconds(key, value)) is not None:
            record.setdefault("response_time_ms", ms)
        record.setdefault(name, value)
    if "endpoint" not in record and (request := _HTTP_REQUEST.search(message)):
        record.setdefault("method", request.group(1))
        record["endpoint"] = request.group(2)


# durations under other names, read as response_time_ms when their unit is known (the pair
# stays a field of its own too); nginx's $request_time is in seconds
_DURATION_KEYS = ("duration", "latency", "elapsed", "took", "response_time", "request_time", "rt")
_SECONDS_KEYS = ("request_time", "rt")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|us|µs)?")
_TO_MS = {"ms": Decimal(1), "s": Decimal(1000), "us": Decimal("0.001"), "µs": Decimal("0.001")}


def _scaled(number: str, factor: Decimal) -> str:
    """``number`` (digits, maybe a fraction) times ``factor``, exactly and with every digit
    (a float's ``:g`` wrote 1234567 as ``1.23457e+06``): ``1.001`` s is ``1001`` ms."""
    return format((Decimal(number) * factor).normalize(), "f")


def _milliseconds(key: str, value: str) -> str | None:
    """``value`` (``12``, ``12ms``, ``0.5s``) in milliseconds, as text; None when its unit
    is unknown (a bare number under a name that does not say its unit)."""
    m = _DURATION.fullmatch(value.strip())
    if not m:
        return None
    unit = m.group(2) or (
        "s" if key.lower() in _SECONDS_KEYS else "ms" if _canonical(key) == "response_time_ms" else None
    )
    if unit is None:
        return None
    return _scaled(m.group(1), _TO_MS[unit])


def parse_line(line: str, now: datetime | None = None) -> dict[str, Any]:
    """One record from its first line; ``now`` dates BSD syslog lines (default: the clock).
    Terminal colour codes are dropped first: they are presentation, and hide the level."""
    text = _ANSI.sub("", line.rstrip("\r\n"))
    stripped = text.strip()
    if cri := _CRI.match(stripped):
        # the program's line, read as any other; the runtime's time is the record's (the
        # program's own, when it wrote one, is kept beside it)
        inner = parse_line(cri.group("message") or "", now)
        if "timestamp" in inner:
            inner["app_timestamp"] = inner.pop("timestamp")
        return {"timestamp": cri.group("timestamp"), "stream": cri.group("stream"), **inner}
    if (obj := _json_object(stripped)) is not None:
        # a key takes its contract name unless the record has that name too ("time" beside
        # "timestamp", "msg" beside "message"): then both keep their own, nothing is lost
        fields = {name if (name := _canonical(k)) == k or name not in obj else k: v for k, v in obj.items()}
        # Docker's and Kubernetes' JSON files wrap the program's own line in "log"
        wrapped = fields.get("log")
        if (
            "level" not in fields
            and isinstance(wrapped, str)
            and not wrapped.startswith("{")
            and (wrapped_level := parse_line(wrapped).get("level"))
        ):
            fields["level"] = wrapped_level
        return fields
    m = _ACCESS.match(stripped)
    if m:
        pairs = m.group("pairs")
        rec = {
            k: v.replace('\\"', '"')
            for k, v in m.groupdict().items()
            if v is not None and v != "-" and k != "pairs"
        }
        rec["timestamp"] = _access_time(rec["timestamp"])
        if "." in rec.get("response_time_ms", ""):  # nginx's $request_time: seconds, to the ms
            rec["response_time_ms"] = _scaled(rec["response_time_ms"], _TO_MS["s"])
        _message_fields(rec, pairs)
        return rec
    if (syslog := _syslog(stripped, now)) is not None:
        return syslog
    if (other := _other_format(stripped, now)) is not None:
        return other
    record: dict[str, Any] = {}
    message = text
    if m := _PREFIX.match(text):
        stamp = m.group("timestamp").replace(",", ".")
        record["timestamp"] = stamp[:4] + "-" + stamp[5:7] + "-" + stamp[8:]  # 2024/01/15 too
        if m.group("offset"):
            record["timestamp"] += f"{m.group('offset')}:{m.group('offset_minutes')}"
        elif m.group("zone"):
            record["timestamp"] += f" {m.group('zone')}"
        message = m.group("rest")
    if level := _LEVEL_FIRST.match(message):
        message = message[level.end() :]  # "ERROR disk full": the level, then the message
    elif "timestamp" in record:
        # the logger or thread before a later level stays in the message
        level = _LEVEL_LATER.search(message, 0, _LEVEL_WITHIN)
        message = message.lstrip(" \t:-")
    elif _TIME_START.match(message):  # a time not read as one (epoch, a time alone): kept
        level = _LEVEL_LATER.search(message, 0, _LEVEL_WITHIN)
    if level:
        record["level"] = _level_name(next(g for g in level.groups() if g))
    _message_fields(record, message)
    if not (isinstance(record.get("message"), str) and not _LOGFMT.sub("", message).strip()):
        record["message"] = message  # (a line of logfmt pairs only keeps its msg="...")
    return record


def write_records(src: TextIO, dst: TextIO) -> tuple[list[str], list[int], int]:
    """Parse every record of ``src`` and write one JSON object per line to ``dst``.

    Returns (field names in order of first appearance, numbers of the lines that are not
    the start of a record — blank, or continuing the record above —, records written).
    Field names beyond the first ``MAX_FIELDS`` go into an ``_extra`` JSON field, so no
    value is lost and the table stays a sane width.
    """
    fields: dict[str, None] = {}
    skipped: list[int] = []
    written = 0
    now = datetime.now(UTC)
    for lines in _entries(src, skipped):
        record = parse_line(lines[0], now)
        if len(lines) > 1:
            first = record.get("message")
            if first is not None and not isinstance(first, str):
                first = json.dumps(first, default=str)  # a JSON record's message may be anything
            record["message"] = "\n".join([first, *lines[1:]] if first else lines[1:])
        extra = {}
        for key in list(record):
            if key not in fields:
                if len(fields) < MAX_FIELDS:
                    fields[key] = None
                else:
                    extra[key] = record.pop(key)
        if extra:
            record["_extra"] = json.dumps(extra, default=str)
            fields.setdefault("_extra", None)
        dst.write(json.dumps(record, default=str, ensure_ascii=False))
        dst.write("\n")
        written += 1
    skipped.sort()  # the first lines' blanks were noted before the records they fall between
    return list(fields), skipped, written


def _entries(src: TextIO, skipped: list[int]) -> Iterator[list[str]]:
    """The lines of each record; appends the numbers of blank and continuation lines to
    ``skipped``."""
    numbered = _cleaned_lines(src, skipped)
    head = list(itertools.islice(numbered, _MULTILINE_VOTE))
    multiline = _joins_lines([line for _, line in head])
    lines: list[str] = []
    size = 0
    for number, line in itertools.chain(head, numbered):
        continues = (
            multiline
            and lines
            and len(lines) < MAX_ENTRY_LINES
            and size + len(line) < MAX_ENTRY_CHARS
            and not _starts_record(line)
        )
        if continues:
            lines.append(line)
            size += len(line) + 1
            skipped.append(number)
            continue
        if lines:
            yield lines
        lines, size = [line], len(line)
    if lines:
        yield lines


_MULTILINE_VOTE = 100  # the first non-blank lines that decide whether records span lines


# Python logging's default time (asctime: milliseconds after a comma), then text with no
# comma: in CSV, "2024-01-15 10:00:00,123 is when..." would be a timestamp and a number
# column; a row with more fields ("...,100 Main St,Springfield") stays a CSV row
_ASCTIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} +[^\d\s,][^,]*$")
# lines that continue a record wherever they are: indented, or how tracebacks go on
_CONTINUATION = re.compile(
    r"^(?:\s|Traceback \(most recent call last\)|Caused by:|During handling|\.\.\. \d+ more)"
)


def _joins_lines(head: list[str]) -> bool:
    """Whether lines that start no record continue the one above: in a log whose records
    start with an ISO timestamp, on its first line or on at least as many of the first
    lines as lines of other shapes (a banner, or a rotated file's first lines that end a
    stack trace, may come before them)."""
    if not head:
        return False
    starts = sum(bool(_TIMESTAMP_START.match(line)) for line in head)
    others = sum(not _TIMESTAMP_START.match(line) and not _CONTINUATION.match(line) for line in head)
    return bool(_TIMESTAMP_START.match(head[0])) or starts >= max(1, others)


def _cleaned_lines(src: TextIO, skipped: list[int]) -> Iterator[tuple[int, str]]:
    """The non-blank lines, numbered and in order, without line end and colour codes (which
    hide what starts a record, and are dropped anyway), a CRI line's parts (tag P, per
    stream) joined into one, up to ``MAX_CRI_LINE`` characters; blank lines' numbers, and
    those of the parts after the first, go to ``skipped``."""
    held: collections.deque[_Line] = collections.deque()  # in file order; the first waits for parts
    partial: dict[str, _Line] = {}  # stream -> its line whose last part has not come yet
    for number, line in _bounded_lines(src):
        if number % 10_000 == 0:
            deadline.check()
        if not line.strip():
            skipped.append(number)
            continue
        line = line.rstrip("\r\n")
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        cri = _CRI.match(line) if " std" in line[:48] else None
        stream = cri.group("stream") if cri else ""
        if cri is not None and stream in partial:
            joined = partial[stream]
            joined.parts.append(cri.group("message") or "")
            joined.size += len(joined.parts[-1])
            skipped.append(number)
            if cri.group("tag") == "F" or joined.size >= MAX_CRI_LINE:
                del partial[stream]
                joined.done = True
        else:
            held.append(_Line(number, [line], len(line), done=cri is None or cri.group("tag") == "F"))
            if not held[-1].done:
                partial[stream] = held[-1]
        # lines wait behind an unfinished one, a bounded number of them
        while held and (held[0].done or len(held) > _MAX_HELD):
            first = held.popleft()
            if not first.done:  # given up on: its later parts start records of their own
                partial = {k: v for k, v in partial.items() if v is not first}
            yield first.number, "".join(first.parts)
    for first in held:  # last parts that never came
        yield first.number, "".join(first.parts)


def _bounded_lines(src: TextIO) -> Iterator[tuple[int, str]]:
    """The lines of ``src``, numbered; a file with a line longer than ``MAX_LINE_CHARS`` is
    refused as soon as that much of it is read: read whole, a line of 200 MB without a line
    end took 940 MB and 40 s, and then DuckDB dropped its record without a word."""
    number = 0
    while line := src.readline(MAX_LINE_CHARS + 2):  # its line end too, a CRLF
        number += 1
        if not line.endswith("\n") and len(line.rstrip("\r")) > MAX_LINE_CHARS:
            raise UnprocessableFile(
                f"line {number} is longer than {MAX_LINE_CHARS:,} characters, the longest "
                "log line headrace reads"
            )
        yield number, line


@dataclass
class _Line:
    number: int
    parts: list[str]
    size: int
    done: bool


_MAX_HELD = 10_000
MAX_CRI_LINE = 8 << 20  # a longer line, in parts, is records of 8 MiB (a record may hold 16)


def _starts_record(line: str) -> bool:
    """A line that is a record on its own: at its first column (a line of a traceback or of
    a pretty-printed body is indented), a time or an upper-case level (``ERROR: ...``;
    ``Error: ...`` is how a JavaScript stack trace begins), a JSON object, or a line of one
    of the formats ``parse_line`` knows by their shape (access log, syslog, Apache's error
    log, klog, Ruby's Logger, logfmt)."""
    if _TIME_START.match(line) or _LEVEL_START.match(line):
        return True
    if line.startswith("{"):
        return _json_object(line) is not None  # not the "{" opening a pretty-printed body
    return any(rx.match(line) for rx in _SHAPES)


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, or None (other JSON, not JSON, or nested deeper than
    Python's recursion limit)."""
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def convert(path: Path, target: Path) -> tuple[list[str], list[int], int]:
    with (
        path.open(encoding="utf-8", errors="replace", newline="") as src,
        target.open("w", encoding="utf-8") as dst,
    ):
        return write_records(src, dst)
