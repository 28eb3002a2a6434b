"""Next fire time of an EventBridge schedule expression: ``rate(...)`` or ``cron(...)``.

AWS cron has six fields — minutes, hours, day-of-month, month, day-of-week, year — with
``?`` for "any" in one of the day fields and day-of-week 1-7 meaning SUN-SAT. Numbers,
names (``MON``, ``JAN``), ``*``, ``?``, lists, ranges and ``/`` steps are supported; the
rarer ``L``, ``W`` and ``#`` are refused with a clear error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


class ScheduleError(ValueError):
    pass


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` (UTC) at which the schedule fires; a rate
    schedule fires one period after ``after``."""
    after = after.astimezone(UTC)
    rate = re.fullmatch(r"rate\((\d+)\s+(\w+)\)", expression.strip())
    if rate:
        unit = _UNITS.get(rate.group(2).lower())
        if unit is None:
            raise ScheduleError(f"unsupported rate unit in {expression!r}")
        return after + timedelta(seconds=int(rate.group(1)) * unit)
    cron = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not cron:
        raise ScheduleError(f"not a schedule expression: {expression!r}")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(f"{expression!r}: AWS cron needs 6 fields (min hour day month weekday year)")
    minutes, hours, days, months, weekdays, years = (
        _field(fields[0], 0, 59, {}),
        _field(fields[1], 0, 23, {}),
        _field(fields[2], 1, 31, {}),
        _field(fields[3], 1, 12, _MONTHS),
        _field(fields[4], 1, 7, _DAYS),
        _field(fields[5], 1970, 2199, {}),
    )
    moment = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
    for _ in range(366 * 24 * 60 * 5):
        if (
            moment.year in years
            and moment.month in months
            and moment.day in days
            and (moment.isoweekday() % 7) + 1 in weekdays
            and moment.hour in hours
            and moment.minute in minutes
        ):
            return moment
        moment += timedelta(minutes=1)
    raise ScheduleError(f"{expression!r} never fires")


def _field(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    if re.search(r"[LW#]", text):
        raise ScheduleError(f"cron field {text!r}: L, W and # are not supported by the local runtime")
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip().upper()
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)
