"""Plain-text logs -> records.

Each non-blank line becomes one record. Recognised shapes, tried in order:

1. a JSON object per line (structured logging);
2. Apache/Nginx common or combined access log, optionally followed by a response time;
3. ``[timestamp] [LEVEL] message`` with ``key=value`` / ``key="quoted value"`` pairs
   (logfmt) anywhere in the message.

A line that matches none of them is kept as ``{"message": line}``: nothing is dropped.
Field names are normalised to the log contract (``level``, ``timestamp``, ``endpoint``,
``status_code``, ``response_time_ms``, ``user_id``) through ``FIELD_ALIASES``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from . import deadline

FIELD_ALIASES: dict[str, str] = {
    "lvl": "level",
    "severity": "level",
    "log_level": "level",
    "loglevel": "level",
    "ts": "timestamp",
    "time": "timestamp",
    "@timestamp": "timestamp",
    "datetime": "timestamp",
    "msg": "message",
    "path": "endpoint",
    "url": "endpoint",
    "uri": "endpoint",
    "route": "endpoint",
    "status": "status_code",
    "http_status": "status_code",
    "statuscode": "status_code",
    "duration_ms": "response_time_ms",
    "latency_ms": "response_time_ms",
    "elapsed_ms": "response_time_ms",
    "response_ms": "response_time_ms",
    "user": "user_id",
    "userid": "user_id",
    "uid": "user_id",
}
MAX_FIELDS = 256

_LEVELS = "TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|SEVERE"
_PREFIX = re.compile(
    r"^\s*\[?(?P<timestamp>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\]?"
    rf"\s*(?:\[?(?P<level>{_LEVELS})\]?(?=[\s:]|$))?[\s:-]*(?P<message>.*)$",
    re.I,
)
_ACCESS = re.compile(
    r"^(?P<client_ip>\S+) \S+ (?P<user_id>\S+) \[(?P<timestamp>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<endpoint>\S+)(?: (?P<protocol>[^"]*))?" (?P<status_code>\d{3}) (?P<bytes>\d+|-)'
    r'(?: "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)")?(?: (?P<response_time_ms>\d+(?:\.\d+)?))?\s*$'
)
_HTTP_REQUEST = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/\S*)")
_LOGFMT = re.compile(r'(?<![\w.-])([A-Za-z_@][\w.@-]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)')


def _canonical(key: str) -> str:
    key = key.strip()
    return FIELD_ALIASES.get(key.lower(), key)


def _access_time(value: str) -> str:
    try:
        return datetime.strptime(value, "%d/%b/%Y:%H:%M:%S %z").isoformat()
    except ValueError:
        return value


def parse_line(line: str) -> dict[str, Any]:
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {_canonical(k): v for k, v in obj.items()}
    m = _ACCESS.match(stripped)
    if m:
        rec = {k: v for k, v in m.groupdict().items() if v is not None and v != "-"}
        rec["timestamp"] = _access_time(rec["timestamp"])
        return rec
    m = _PREFIX.match(text)
    record: dict[str, Any] = {}
    message = text
    if m:
        if m.group("timestamp"):
            record["timestamp"] = m.group("timestamp").replace(",", ".")
        if m.group("level"):
            level = m.group("level").upper()
            record["level"] = {"WARNING": "WARN", "ERR": "ERROR", "CRIT": "CRITICAL"}.get(level, level)
        message = m.group("message")
    for key, value in _LOGFMT.findall(message):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        key = _canonical(key)
        if key == "level":
            value = value.upper()
        record.setdefault(key, value)
    if "endpoint" not in record and (request := _HTTP_REQUEST.search(message)):
        record.setdefault("method", request.group(1))
        record["endpoint"] = request.group(2)
    record["message"] = message
    return record


def write_records(src: TextIO, dst: TextIO) -> tuple[list[str], list[int], int]:
    """Parse every line of ``src`` and write one JSON object per line to ``dst``.

    Returns (field names in order of first appearance, blank line numbers, records written).
    Field names beyond the first ``MAX_FIELDS`` go into an ``_extra`` JSON field, so no
    value is lost and the table stays a sane width.
    """
    fields: dict[str, None] = {}
    blank: list[int] = []
    written = 0
    for number, line in enumerate(src, start=1):
        if number % 10_000 == 0:
            deadline.check()
        if not line.strip():
            blank.append(number)
            continue
        record = parse_line(line)
        extra = {k: record.pop(k) for k in list(record) if k not in fields and len(fields) >= MAX_FIELDS}
        fields.update(dict.fromkeys(record))
        if extra:
            record["_extra"] = json.dumps(extra, default=str)
            fields.setdefault("_extra", None)
        dst.write(json.dumps(record, default=str, ensure_ascii=False))
        dst.write("\n")
        written += 1
    return list(fields), blank, written


def convert(path: Path, target: Path) -> tuple[list[str], list[int], int]:
    with (
        path.open(encoding="utf-8", errors="replace", newline="") as src,
        target.open("w", encoding="utf-8") as dst,
    ):
        return write_records(src, dst)
