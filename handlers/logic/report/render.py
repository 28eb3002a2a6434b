"""The report as a page a person reads (self-contained HTML: inline CSS, an inline SVG
chart, no script, no external asset) and as the short SNS message.

Every value from the data (object keys, errors, datasets, column names) is user-controlled:
on the page it is HTML-escaped, with its control and format characters (bidi overrides and
isolates, zero-width marks, line separators) written as escapes by ``printable``, as in the
message, so a key cannot reverse or hide what the page shows. In the plain-text message they
are also cut short, and come after the report's link, so they cannot pass for it.
"""

from __future__ import annotations

import math
from datetime import date
from html import escape

from handlers.logic.printable import printable
from handlers.models.report import DailyReport, Failure, HourBucket

COLOURS = {
    "completed": "#2f855a",
    "failed": "#c53030",
    "fixed": "#f6ad55",
    "skipped": "#90cdf4",
    "other": "#a0aec0",
}
# Longest object key / error quoted in the SNS message (the page shows them whole).
MESSAGE_VALUE_CHARS = 200
# Failures the page shows (report.json lists more: build.MAX_FAILURES).
PAGE_FAILURES = 50

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#1a202c;font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:980px;margin:0 auto;padding:32px 24px 48px}
header{display:flex;justify-content:space-between;align-items:flex-end;flex-wrap:wrap;gap:8px;margin-bottom:8px}
h1{font-size:26px;margin:0;letter-spacing:-.01em}
h1 small{display:block;font-size:13px;font-weight:600;color:#4a5568;text-transform:uppercase;letter-spacing:.08em}
h2{font-size:17px;margin:32px 0 10px}
.meta{color:#4a5568;font-size:13px;text-align:right}
.verdict{display:inline-block;margin:12px 0 4px;padding:6px 12px;border-radius:999px;font-weight:600;font-size:14px}
.ok{background:#e6f4ea;color:#22543d}.bad{background:#fde8e8;color:#9b2c2c}.quiet{background:#edf2f7;color:#2d3748}
.warn{background:#fefcbf;color:#744210}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px;margin-top:16px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:14px 16px}
.card .label{font-size:12px;color:#4a5568;text-transform:uppercase;letter-spacing:.06em}
.card .value{font-size:26px;font-weight:700;margin-top:2px;font-variant-numeric:tabular-nums}
.card .note{font-size:12px;color:#718096}
.card.alert .value{color:#c53030}
.panel{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:16px}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #e2e8f0;border-radius:10px;overflow:hidden;font-size:14px}
th,td{padding:8px 12px;text-align:left;vertical-align:top;border-bottom:1px solid #edf2f7}
th{background:#f7fafc;font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#4a5568}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:last-child td{border-bottom:none}
.failures td:nth-child(1){width:32%}.failures td:nth-child(3){width:46%}
.key{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;word-break:break-all}
.err{color:#9b2c2c;overflow-wrap:anywhere}
.fixed{display:block;color:#2f855a;font-size:12px}
.empty{color:#718096;font-style:italic;background:#fff;border:1px dashed #cbd5e0;border-radius:10px;padding:12px 16px}
.legend{display:flex;gap:16px;font-size:13px;color:#4a5568;margin-top:6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
footer{margin-top:36px;color:#718096;font-size:12px}
"""


def number(n: int | float | None) -> str:
    return "-" if n is None else f"{n:,.0f}"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:,.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:,.1f} s"
    return f"{ms / 60_000:,.1f} min"


def long_date(day: str) -> str:
    d = date.fromisoformat(day)
    return f"{d:%A} {d.day} {d:%B %Y}"


def render_html(report: DailyReport, json_link: str) -> str:
    """The page; ``json_link`` is where its report.json can be fetched (presigned: a link
    relative to a presigned page would be unsigned)."""
    f = report.files
    css, text = verdict(report)
    headline = f'<span class="verdict {css}">{escape(text)}</span>'
    dead_letters = _known_sum(report.processing_dlq_depth, report.load_dlq_depth)
    cards = [
        _card("Files received", number(f.received), "that the processor started on"),
        _card("Completed", number(f.completed), _share(f.completed, f.received)),
        _card(
            "Failed",
            number(f.failed),
            f"and {number(f.fixed)} fixed in place since" if f.fixed else _share(f.failed, f.received),
            alert=f.failed > 0,
        ),
        _card("Skipped", number(f.skipped), "superseded or deleted before processing"),
        _card(
            "Still in progress",
            number(f.processing + f.waiting),
            f"{number(f.stuck)} stuck for over 6 h: see the processing DLQ"
            if f.stuck
            else "received or processing",
            alert=f.stuck > 0,
        ),
        _card("Rows", number(report.rows), "in completed files (latest versions)"),
        _card("Data received", size(report.bytes)),
        _card("Latency p50", duration(report.latency_ms.p50), "upload to completed"),
        _card("Latency p95", duration(report.latency_ms.p95), f"max {duration(report.latency_ms.max)}"),
        _card(
            "Loaded into PostgreSQL",
            number(report.warehouse.loaded),
            f"{number(report.warehouse.rows)} rows"
            + _failed_loads(report)
            + (f", {number(report.warehouse.pending)} not loaded yet" if report.warehouse.pending else ""),
            alert=report.warehouse.failed > 0 or report.warehouse.pending > 0,
        ),
        _card(
            "Processing queue",
            number(report.processing_backlog),
            "uploads not yet in these figures" if report.processing_backlog else "messages now",
            alert=bool(report.processing_backlog),
        ),
        _card(
            "Dead letters",
            number(dead_letters),
            f"processing DLQ {number(report.processing_dlq_depth)}, load DLQ {number(report.load_dlq_depth)}",
            alert=bool(dead_letters),
        ),
    ]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>headrace daily report — {escape(report.date)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
  <h1><small>headrace · daily report</small>{escape(long_date(report.date))}</h1>
  <div class="meta">Files uploaded {escape(report.date)} (UTC){escape(_so_far(report))}<br>Generated {escape(report.generated_at)}</div>
</header>
{headline}
<section class="cards">{"".join(cards)}</section>

<h2>Files by hour of upload (UTC)</h2>
<div class="panel">{hourly_chart(report.hourly)}
<div class="legend"><span><i style="background:{COLOURS["completed"]}"></i>completed</span><span><i style="background:{COLOURS["failed"]}"></i>failed</span><span><i style="background:{COLOURS["fixed"]}"></i>failed, fixed in place</span><span><i style="background:{COLOURS["skipped"]}"></i>skipped</span><span><i style="background:{COLOURS["other"]}"></i>in progress</span></div>
</div>

<h2>By format</h2>
{_formats(report)}

<h2>Top data-quality issues</h2>
{_issues(report)}

<h2>Slowest files</h2>
{_slowest(report)}

<h2>Failures{f" ({number(report.failures_total)})" if report.failures_total else ""}</h2>
{_failures(report)}

<footer>{escape(BLIND_SPOTS)} The same figures as JSON: <a href="{escape(json_link)}">report.json</a>.</footer>
</main>
</body>
</html>
"""


def _so_far(report: DailyReport) -> str:
    """What a report of a day not over yet (``partial``) adds to the day it names."""
    if not report.partial:
        return ""
    return f" until {report.generated_at[11:19]}: a partial day, the day is not over"


def verdict(report: DailyReport) -> tuple[str, str]:
    """The page's headline: its CSS class and text. "bad": files failed (processing or
    loading), are stuck, or messages wait in a DLQ (whatever day they are from); "warn": the
    day went well but messages wait in the processing queue, completed files are not loaded
    into the warehouse yet, or the queues could not be read
    ("bad" when no file reached the processor all day while messages wait: an outage);
    "quiet": no file reached the processor and no queue holds one; "ok" otherwise. A backlog
    (messages waiting, not those in flight) or dead letters never read as a quiet or a good
    day."""
    f = report.files
    problems = []
    if f.failed:
        problems.append(f"{number(f.failed)} file{'s' if f.failed != 1 else ''} failed processing")
    if f.stuck:
        problems.append(f"{number(f.stuck)} stuck")
    if report.warehouse.failed:
        problems.append(f"{number(report.warehouse.failed)} failed loading")
    for label, depth in (("processing", report.processing_dlq_depth), ("load", report.load_dlq_depth)):
        if depth:
            problems.append(f"{_messages(depth)} in the {label} DLQ")
    notes = []
    if report.processing_backlog:
        notes.append(f"{_messages(report.processing_backlog)} in the processing queue")
    if pending := report.warehouse.pending:
        notes.append(
            f"{number(pending)} completed file{'s' if pending != 1 else ''} not loaded into PostgreSQL yet"
        )
    if None in (report.processing_backlog, report.processing_dlq_depth, report.load_dlq_depth):
        notes.append("queue depths unknown")
    if f.received == 0:
        text = "No file reached the processor on this day" + (" so far" if report.partial else "")
        if problems or report.processing_backlog:
            return "bad", f"{text}: {', '.join(problems + notes)}"
        return ("warn", f"{text} ({notes[0]})") if notes else ("quiet", text)
    if problems:
        return "bad", ", ".join(problems + notes)
    if f.fixed:
        text = (
            f"No open failures: {number(f.fixed)} {'file' if f.fixed == 1 else 'files'} failed and "
            f"{'was' if f.fixed == 1 else 'were'} fixed in place (a newer version completed)"
        )
    else:
        text = "Every finished file was processed successfully"
    return ("warn", f"{text}; {', '.join(notes)}") if notes else ("ok", text)


# What the figures leave out (the page's footer; docs/warehouse-and-reports.md).
BLIND_SPOTS = (
    "The figures count the files uploaded this day that the processor has started on. Uploads "
    "still in the processing queue, and those whose messages reached the processing DLQ before "
    "the processor could record them (a crash at start-up, a failed delivery), are not in them: "
    "the queue depths, taken for the whole pipeline when the report was made, show them. Nor are "
    "outcomes recorded after the report was made."
)


def _messages(n: int) -> str:
    return f"{number(n)} message{'s' if n != 1 else ''}"


def _depth(n: int | None) -> str:
    return "unknown" if n is None else number(n)


def _known_sum(*values: int | None) -> int | None:
    return None if None in values else sum(v for v in values if v is not None)


def _card(label: str, value: str, note: str = "", alert: bool = False) -> str:
    return (
        f'<div class="card{" alert" if alert else ""}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="note">{escape(note)}&nbsp;</div></div>'
    )


def _shown(text: str) -> str:
    """User-controlled ``text`` for the page: its control and format characters written as
    escapes (``\\u202e``; ``printable``, as in the message), then HTML-escaped."""
    return escape(printable(text))


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% of received" if whole else ""


def _table(
    headers: list[tuple[str, bool]], rows: list[list[tuple[str, str]]], empty: str, css_class: str = ""
) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th{' class=num' if numeric else ''}>{escape(h)}</th>" for h, numeric in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>" for text, cls in row)
        + "</tr>"
        for row in rows
    )
    opening = f'<table class="{css_class}">' if css_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _formats(report: DailyReport) -> str:
    return _table(
        [
            ("Format", False),
            ("Files", True),
            ("Completed", True),
            ("Failed", True),
            ("Rows", True),
            ("Data", True),
        ],
        [
            [
                (escape(t.format), ""),
                (number(t.files), "num"),
                (number(t.completed), "num"),
                (number(t.failed), "num"),
                (number(t.rows), "num"),
                (size(t.bytes), "num"),
            ]
            for t in report.formats
        ],
        "No files.",
    )


def _issues(report: DailyReport) -> str:
    table = _table(
        [("Issue", False), ("Dataset", False), ("Column", False), ("Files", True), ("Rows affected", True)],
        [
            [
                (escape(q.kind), ""),
                (_shown(q.dataset), "key"),
                (_shown(q.column) if q.column else "—", "key"),
                (number(q.files), "num"),
                (number(q.count), "num"),
            ]
            for q in report.quality_issues
        ],
        "No data-quality issues in the completed files.",
    )
    if (more := report.quality_issues_total - len(report.quality_issues)) > 0:
        table += (
            f'<p class="empty">…and {number(more)} more (an issue of one column of a dataset each): '
            "report.json counts them in quality_issues_total; each file's summary JSON lists its own.</p>"
        )
    if left_out := report.quality_issues_left_out:
        table += (
            f'<p class="empty">Not counted: the quality issues of {number(left_out)} '
            f"file{'s' if left_out != 1 else ''} whose summary was too large for the metadata table "
            "(see their summary JSON).</p>"
        )
    return table


def _slowest(report: DailyReport) -> str:
    return _table(
        [
            ("File", False),
            ("Format", False),
            ("Rows", True),
            ("Size", True),
            ("Processing", True),
            ("Queue wait", True),
        ],
        [
            [
                (_shown(s.object_key), "key"),
                (escape(s.format or "?"), ""),
                (number(s.rows), "num"),
                (size(s.bytes or 0), "num"),
                (duration(s.total_ms), "num"),
                (duration(s.timings_ms.get("queue_wait")), "num"),
            ]
            for s in report.slowest_files
        ],
        "No completed files.",
    )


def _failures(report: DailyReport) -> str:
    rows = [
        [
            (
                _shown(x.object_key)
                + (
                    '<span class="fixed">fixed in place: a newer version completed</span>'
                    if x.replaced
                    else ""
                ),
                "key",
            ),
            (escape(_stage(x)), ""),
            (_shown(" ".join(x.error.split())), "err"),
            (escape((x.at or "")[:19].replace("T", " ")), "num"),
        ]
        for x in report.failures[:PAGE_FAILURES]
    ]
    table = _table(
        [("File", False), ("Stage", False), ("Error", False), ("When (UTC)", True)],
        rows,
        "No failures.",
        "failures",
    )
    if report.failures_total > len(rows):
        more = number(report.failures_total - len(rows))
        listed = len(report.failures)
        where = (
            "listed in report.json"
            if listed == report.failures_total
            else f"report.json lists the first {number(listed)}"
        )
        table += f'<p class="empty">…and {more} more: {where}.</p>'
    return table


def hourly_chart(hours: list[HourBucket], width: int = 930, height: int = 220) -> str:
    """Stacked bars of files per upload hour: completed, failed, fixed in place, skipped, in
    progress."""
    left, bottom, top = 36, 24, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((h.received for h in hours), default=0)
    scale_max = _nice_ceiling(peak)
    slot = plot_w / 24
    bar = slot * 0.7
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="Files per hour of upload: {sum(h.received for h in hours)} in total">'
    ]
    for i in range(5):  # gridlines and y labels
        value = scale_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#718096">{value:,.0f}</text>'
        )
    for h in hours:
        x = left + h.hour * slot + (slot - bar) / 2
        y = top + plot_h
        other = max(0, h.received - h.completed - h.failed - h.fixed - h.skipped)
        for count, colour in (
            (h.completed, COLOURS["completed"]),
            (h.failed, COLOURS["failed"]),
            (h.fixed, COLOURS["fixed"]),
            (h.skipped, COLOURS["skipped"]),
            (other, COLOURS["other"]),
        ):
            if count and scale_max:
                height_px = plot_h * count / scale_max
                y -= height_px
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height_px:.1f}" fill="{colour}" rx="2">'
                    f"<title>{h.hour:02d}:00 {count} file(s)</title></rect>"
                )
        if h.hour % 3 == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle" fill="#718096">{h.hour:02d}:00</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(n: int) -> int:
    """A round axis maximum >= n with four whole-number steps (gridlines at quarters):
    4, 8, 20, 40, 100, 200, 400, ..."""
    if n <= 4:
        return 4
    raw = n / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * magnitude
        if step >= raw and float(step).is_integer():
            return int(4 * step)
    return 40 * magnitude


# SNS takes a subject of at most 100 characters.
MAX_SUBJECT_CHARS = 100


def sns_subject(report: DailyReport) -> str:
    """The day's files and open failures, then any dead letters, queued messages and failures
    fixed in place, as many of these as fit whole in ``MAX_SUBJECT_CHARS``: a part cut short
    would show another number ("2,500 fixed in place" cut to "2,5")."""
    f = report.files
    partial = " (partial)" if report.partial else ""
    subject = f"headrace report {report.date}{partial}: {f.received} files, " + (
        f"{f.failed} failed" if f.failed else "no open failures" if f.fixed else "no failures"
    )
    dead = (report.processing_dlq_depth or 0) + (report.load_dlq_depth or 0)
    for count, what in (
        (dead, "dead letters"),
        (report.processing_backlog, "queued"),
        (f.fixed, "fixed in place"),
    ):
        part = f", {count} {what}"
        if count and len(subject) + len(part) <= MAX_SUBJECT_CHARS:
            subject += part
    return subject


def sns_message(report: DailyReport, link: str, link_ttl_seconds: int) -> str:
    f = report.files
    lines = [
        f"headrace daily report for {report.date} (UTC){_so_far(report)}",
        verdict(report)[1],
        "",
        f"Files: {number(f.received)} received, {number(f.completed)} completed, {number(f.failed)} failed, "
        + (f"{number(f.fixed)} failed and fixed in place since, " if f.fixed else "")
        + (f"{number(f.skipped)} skipped, " if f.skipped else "")
        + f"{number(f.processing + f.waiting)} in progress"
        + (f" ({number(f.stuck)} stuck for over 6 h: see the processing DLQ)" if f.stuck else ""),
        f"Rows: {number(report.rows)}   Data: {size(report.bytes)}   "
        f"Latency p50/p95: {duration(report.latency_ms.p50)} / {duration(report.latency_ms.p95)}",
        f"Loaded into PostgreSQL: {number(report.warehouse.loaded)} files"
        + _failed_loads(report)
        + (f", {number(report.warehouse.pending)} not loaded yet" if report.warehouse.pending else ""),
        f"Queues now: {_depth(report.processing_backlog)} in the processing queue"
        + (" (uploads not yet in these figures)" if report.processing_backlog else "")
        + f", {_depth(report.processing_dlq_depth)} in the processing DLQ, "
        f"{_depth(report.load_dlq_depth)} in the load DLQ"
        + (
            " (headrace dlq inspect; docs/operations.md)"
            if report.processing_dlq_depth or report.load_dlq_depth
            else ""
        ),
    ]
    lines += ["", f"Report (link valid for up to {_period(link_ttl_seconds)}):", link]
    # user-controlled text last, on one line each: it cannot come before the link or pass for it
    if report.failures:  # the open ones come first
        first = report.failures[0]
        stage = f"{first.stage}, fixed in place since" if first.replaced else _stage(first)
        lines += ["", f"Latest failure ({stage}): {_quoted(first.object_key)}: {_quoted(first.error)}"]
    return "\n".join(lines)


def _failed_loads(report: DailyReport) -> str:
    """ ", N failed (M rejected for good: not retried)" for the warehouse line, or nothing."""
    w = report.warehouse
    if not w.failed:
        return ""
    rejected = f" ({number(w.rejected)} rejected for good: not retried)" if w.rejected else ""
    return f", {number(w.failed)} failed{rejected}"


def _stage(failure: Failure) -> str:
    """The failure's stage, and whether it is for good (no retry or redrive can help)."""
    if not failure.permanent:
        return failure.stage
    if failure.stage == "load":
        return "load, rejected for good: not retried"
    return "processing, the file itself: fix it in place"


def _quoted(text: str) -> str:
    """``text`` for the plain-text message: control and line-breaking characters written
    as escapes (``\\n``, ``\\x1b``, ``\\u2028``), at most ``MESSAGE_VALUE_CHARS`` characters."""
    shown = printable(text)
    return shown if len(shown) <= MESSAGE_VALUE_CHARS else shown[: MESSAGE_VALUE_CHARS - 1] + "…"


def _period(seconds: int) -> str:
    """``seconds`` in the largest unit that divides it evenly: "7 days", "1 day", "25 hours"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"
