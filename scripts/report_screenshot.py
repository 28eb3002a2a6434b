"""Render a sample daily report and screenshot it with headless Chromium (docs/report.png).

The page is produced by the report Lambda's own code (``build_report`` + ``render_html``)
from a synthetic but plausible day of metadata items (fixed seed): ~300 files across the
day in four formats, a few failures in processing and in loading, two skipped versions,
quality issues.

    .venv/bin/python scripts/report_screenshot.py [--out docs/report.png] [--html report.html]

Needs ``chromium`` (Debian: apt-get install chromium) or ``google-chrome`` on PATH.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handlers.logic.report.build import build_report
from handlers.logic.report.render import render_html

DAY = datetime(2025, 3, 14, tzinfo=UTC)
DATASETS = {
    "sales": ("csv", ["order_id", "customer", "quantity", "price", "shipped_on"]),
    "inventory": ("csv", ["sku", "warehouse", "on_hand", "counted_at"]),
    "app_logs": ("log", ["level", "endpoint", "response_time_ms", "user_id"]),
    "clickstream": ("ndjson", ["session", "page", "referrer", "duration_ms"]),
    "partners": ("json", ["partner_id", "country", "tier"]),
}
ERRORS = [
    "binary content: NUL byte at offset 0; expected CSV, JSON, NDJSON or log text",
    "the file is empty (0 bytes)",
    "412 of 530 records are malformed; first at line 3: expected 5 fields, found 9 (more than 50%: the file is not valid CSV)",
]
LOAD_ERRORS = [
    "gave up after 5 attempts: DatabaseUnavailable: database unavailable: connection to server at "
    '"warehouse.internal" (10.0.3.12), port 5432 failed: timeout expired',
]


def sample_items(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for n in range(312):
        # busier during the working day
        hour = min(23, max(0, int(rng.gauss(13, 4.5))))
        uploaded = DAY + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))
        dataset = rng.choices(list(DATASETS), weights=[5, 2, 4, 3, 1])[0]
        fmt, columns = DATASETS[dataset]
        key = f"incoming/{dataset}/{uploaded:%Y-%m-%d}/{dataset}-{n:04d}.{'log' if fmt == 'log' else fmt}"
        size = int(rng.lognormvariate(13, 1.1))
        item = {
            "object_key": key,
            "version": f"v{n:06d}",
            "uploaded_at": uploaded.isoformat().replace("+00:00", "Z"),
            "size": size,
            "dataset": dataset,
        }
        roll = rng.random()
        if n in (17, 120, 233, 301) or roll < 0.012:
            item |= {
                "status": "failed",
                "error": rng.choice(ERRORS),
                "failed_at": (uploaded + timedelta(seconds=rng.uniform(2, 40)))
                .isoformat()
                .replace("+00:00", "Z"),
            }
        elif n in (88, 205):  # replaced by a newer upload of the key before it was processed
            item |= {
                "status": "failed",
                "skip_reason": "superseded",
                "error": "superseded by a newer version of the object",
                "failed_at": (uploaded + timedelta(seconds=rng.uniform(2, 40)))
                .isoformat()
                .replace("+00:00", "Z"),
            }
        elif hour == 23 and roll < 0.3:
            item |= {"status": "processing"}
        else:
            rows = max(1, size // rng.randint(60, 140))
            process_ms = 180 + rows * rng.uniform(0.004, 0.02)
            queue_ms = rng.expovariate(1 / 900)
            total = process_ms + rng.uniform(80, 400)
            completed = uploaded + timedelta(milliseconds=queue_ms + total)
            quality: dict = {"missing_values": {}, "type_mismatches": {}}
            if rng.random() < 0.45:
                column = rng.choice(columns)
                quality["missing_values"][column] = {
                    "count": rng.randint(1, max(2, rows // 400)),
                    "percentage": 0.3,
                }
            if rng.random() < 0.12:
                column = rng.choice(columns)
                quality["type_mismatches"][column] = {
                    "expected": "int",
                    "count": rng.randint(1, 300),
                    "percentage": 0.1,
                }
            if rng.random() < 0.08:
                quality["malformed_rows"] = {"count": rng.randint(1, 12)}
            if rng.random() < 0.1:
                quality["duplicate_rows"] = {"count": rng.randint(1, 400)}
            item |= {
                "status": "completed",
                "format": fmt,
                "row_count": rows,
                "file_size_bytes": size,
                "completed_at": completed.isoformat().replace("+00:00", "Z"),
                "timings_ms": {
                    "queue_wait": round(queue_ms, 1),
                    "download": round(rng.uniform(20, 200), 1),
                    "process": round(process_ms, 1),
                    "write": round(rng.uniform(30, 150), 1),
                    "total": round(total, 1),
                },
                "quality_issues": quality,
                "load_status": "loaded",
                "load_rows": rows,
            }
            if n in (41, 42):
                item |= {
                    "load_status": "failed",
                    "load_error": LOAD_ERRORS[0],
                    "load_failed_at": (completed + timedelta(minutes=6)).isoformat().replace("+00:00", "Z"),
                }
        items.append(item)
    return items


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    raise SystemExit("no chromium or google-chrome on PATH (Debian: apt-get install chromium)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--html", type=Path, help="also keep the rendered page here")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=2890)
    args = parser.parse_args()

    report = build_report(DAY.date().isoformat(), sample_items(), DAY + timedelta(days=1, hours=6), backlog=3)
    page = render_html(report, "report.json")
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        html = Path(tmp) / "report.html"
        html.write_text(page)
        if args.html:
            args.html.write_text(page)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",  # chromium refuses to sandbox as root (CI containers)
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={args.width},{args.height}",
            f"--user-data-dir={tmp}/profile",
            f"--screenshot={args.out.resolve()}",
            html.as_uri(),
        ]
        subprocess.run(command, check=True, timeout=120, capture_output=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
