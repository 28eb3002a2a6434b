"""Object keys are chosen by whoever uploads: the CLI shows them escaped, never raw."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from handlers.logic.printable import printable
from headrace import dlq, status

FORGED = "incoming/x/\x1b[2K\x1b[32mall good\x1b[0m\rFailures: none\n  forged line\u202e.csv"


def test_control_format_and_line_breaking_characters_are_escaped():
    assert printable(FORGED) == (
        "incoming/x/\\x1b[2K\\x1b[32mall good\\x1b[0m\\rFailures: none\\n  forged line\\u202e.csv"
    )
    assert printable("Über Sales/東京 x.csv") == "Über Sales/東京 x.csv"


def test_status_shows_keys_and_errors_escaped():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    failure = {
        "at": "2026-12-06T11:59:00Z",
        "stage": "processing",
        "object_key": FORGED,
        "error": "bad \x1b[31m",
    }
    report = {
        "queues": [],
        "last_completed": {"object_key": FORGED, "completed_at": "2026-12-06T11:00:00Z", "version": "v1"},
        "failures": [failure],
        "window_minutes": 60,
        "uploads_since": "2026-12-05",
        "dead_letters": 0,
    }
    text = status.render(report, Path("outputs.json"), now)
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert not any(line.startswith("  forged") for line in text.splitlines())


def test_dlq_listing_shows_keys_and_reasons_escaped():
    letter = dlq.DeadLetter(
        message_id="m1",
        subject=FORGED,
        version="v1",
        sent_at=None,
        receives=1,
        status="failed",
        reason="x\x1b[31m",
    )
    text = dlq.render("processing", "https://queue", [letter])
    assert "\x1b" not in text and "\r" not in text
    assert not any(line.startswith("  forged") for line in text.splitlines())
