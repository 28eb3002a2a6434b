"""Next fire time of an EventBridge schedule expression: ``rate(...)`` or ``cron(...)``.

AWS cron has six fields — minutes, hours, day-of-month, month, day-of-week, year — with
``?`` for "any" in one of the day fields and day-of-week 1-7 meaning SUN-SAT. Numbers,
names (``MON``, ``JAN``), ``*``, ``?``, lists, ranges and ``/`` steps are supported, and so
are EventBridge's day forms, as the stack's configuration accepts them
(``components/config.py``): in day-of-month ``L`` (the month's last day), ``LW`` (its last
weekday) and ``15W`` (the weekday nearest the 15th, within the month); in day-of-week ``L``
(Saturday, the week's last day), ``6L`` (the month's last Friday) and ``2#1`` (its first
Monday). Times are UTC.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# How far ahead a schedule is looked for: eight years holds a February 29 (2096 to 2104).
_HORIZON_DAYS = 8 * 366


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
    try:
        minutes = _field(fields[0], 0, 59, {})
        hours = _field(fields[1], 0, 23, {})
        months = _field(fields[3], 1, 12, _MONTHS)
        years = _field(fields[5], 1970, 2199, {})
        on_day = _day_of_month(fields[2])
        on_weekday = _day_of_week(fields[4])
    except (ValueError, KeyError) as exc:
        raise ScheduleError(f"{expression!r}: {exc}") from None
    times = sorted((h, m) for h in hours for m in minutes)
    first = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
    day = first.date()
    for _ in range(_HORIZON_DAYS):
        if day.year in years and day.month in months and on_day(day) and on_weekday(day):
            for hour, minute in times:
                moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if moment >= first:
                    return moment
        day += timedelta(days=1)
    raise ScheduleError(f"{expression!r} never fires")


def _field(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip().upper()
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError(f"a step must be at least 1, not {step}")
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high):
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)


def _last_day(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _weekday(day: date) -> int:
    """AWS's day of the week: 1 (Sunday) to 7 (Saturday)."""
    return day.isoweekday() % 7 + 1


def _nearest_weekday(day: date, target: int) -> int | None:
    """The day of ``day``'s month that is the weekday nearest its ``target``th, never in
    another month (``1W`` on a Saturday the 1st is Monday the 3rd); None when the month has
    no ``target``th day."""
    if target > _last_day(day):
        return None
    wanted = day.replace(day=target)
    if wanted.weekday() == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return target - 1 if target > 1 else target + 2
    if wanted.weekday() == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return target + 1 if target < _last_day(day) else target - 2
    return target


def _day_of_month(text: str) -> Callable[[date], bool]:
    tests: list[Callable[[date], bool]] = []
    for part in text.split(","):
        part = part.strip().upper()
        if part == "L":
            tests.append(lambda d: d.day == _last_day(d))
        elif part == "LW":
            tests.append(lambda d: d.day == _nearest_weekday(d, _last_day(d)))
        elif m := re.fullmatch(r"(\d+)W", part):
            target = int(m[1])
            if not 1 <= target <= 31:
                raise ValueError(f"{part!r}: the day is outside 1-31")
            tests.append(partial(_is_nearest_weekday, target))
        else:
            tests.append(partial(_day_in, _field(part, 1, 31, {})))
    return lambda d: any(test(d) for test in tests)


def _is_nearest_weekday(target: int, d: date) -> bool:
    return d.day == _nearest_weekday(d, target)


def _day_in(days: set[int], d: date) -> bool:
    return d.day in days


def _day_of_week(text: str) -> Callable[[date], bool]:
    tests: list[Callable[[date], bool]] = []
    for part in text.split(","):
        part = part.strip().upper()
        if part == "L":
            tests.append(partial(_weekday_in, {7}))
        elif m := re.fullmatch(r"(\w+)L", part):
            tests.append(partial(_is_last_weekday, _one_weekday(m[1])))
        elif m := re.fullmatch(r"(\w+)#([1-5])", part):
            tests.append(partial(_is_nth_weekday, _one_weekday(m[1]), int(m[2])))
        else:
            tests.append(partial(_weekday_in, _field(part, 1, 7, _DAYS)))
    return lambda d: any(test(d) for test in tests)


def _weekday_in(weekdays: set[int], d: date) -> bool:
    return _weekday(d) in weekdays


def _is_last_weekday(weekday: int, d: date) -> bool:
    """``d`` is the month's last ``weekday`` (``6L``: its last Friday)."""
    return _weekday(d) == weekday and d.day + 7 > _last_day(d)


def _is_nth_weekday(weekday: int, nth: int, d: date) -> bool:
    """``d`` is the month's ``nth`` ``weekday`` (``2#1``: its first Monday)."""
    return _weekday(d) == weekday and (d.day - 1) // 7 + 1 == nth


def _one_weekday(text: str) -> int:
    weekday = _value(text, _DAYS)
    if not 1 <= weekday <= 7:
        raise ValueError(f"{text!r} is not a day of the week (1-7 or SUN-SAT)")
    return weekday
