"""Processing-core benchmark (issue 2): the core against DuckDB and pandas, in one run.

    .venv/bin/python benchmarks/processing.py [--rows 1000000] [--large-rows 10000000] [--repeat 3]
                                              [--memory-limit 614MB]

1. Generates a mixed-type CSV (int, date, timestamp, category, int with 5% missing,
   decimal, bool, free text with ~1% e-mail addresses): ~67 MB at 1M rows.
2. Times, each in a fresh process (median of ``--repeat`` runs, imports excluded):
   - DuckDB:  COPY (SELECT * FROM read_csv_auto(f)) TO 'x.parquet'
   - headrace: process_file (schema + statistics + quality + PII + Parquet), exactly as the
     processor Lambda runs it, with the memory limit a 1024 MB function gets (``--memory-limit``);
   - pandas:  read_csv + describe(include="all") + to_parquet.
3. Peak RSS of the core at ``--rows`` and at ``--large-rows``.

Targets: headrace within 1.5x of DuckDB's time; peak RSS at the large size no more than
1.5x that at the small one. Results go to stdout; record them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / ".data"
MEMORY_LIMIT = "614MB"  # 60% of a 1024 MB processor function, as ProcessorSettings derives it
MEMORY_LIMIT_ENV = "HEADRACE_BENCH_MEMORY_LIMIT"  # parent -> worker process


def generate(path: Path, rows: int) -> Path:
    if path.exists():
        return path
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.sql(
        f"""
        COPY (
          SELECT
            i AS id,
            DATE '2024-01-01' + CAST(hash(i, 1) % 366 AS INTEGER) AS event_date,
            TIMESTAMP '2024-01-01 00:00:00' + to_seconds(CAST(hash(i, 2) % 31536000 AS BIGINT)) AS event_ts,
            ['Widget', 'Gadget', 'Gizmo', 'Doohickey', 'Thingamajig'][1 + CAST(hash(i, 3) % 5 AS INTEGER)] AS product,
            CASE WHEN hash(i, 4) % 20 = 0 THEN NULL ELSE 1 + CAST(hash(i, 5) % 99 AS INTEGER) END AS quantity,
            round(1 + (hash(i, 6) % 50000) / 100.0, 2) AS price,
            hash(i, 7) % 2 = 0 AS active,
            CASE WHEN hash(i, 8) % 100 = 0 THEN 'mail user' || (i % 997) || '@example.com'
                 ELSE 'note ' || (hash(i, 9) % 1000) END AS note
          FROM range({rows}) t(i)
        ) TO '{path}' (HEADER, DELIMITER ',')
        """
    )
    return path


# ---------------------------------------------------------------------- workers (child processes)
def _worker(kind: str, source: Path, out: Path) -> dict[str, float]:
    if kind == "duckdb":
        import duckdb

        start = time.perf_counter()
        duckdb.sql(f"COPY (SELECT * FROM read_csv_auto('{source}')) TO '{out}'")
    elif kind == "headrace":
        sys.path.insert(0, str(ROOT))
        from handlers.logic.processing import ProcessingOptions, process_file

        options = ProcessingOptions(memory_limit=os.environ[MEMORY_LIMIT_ENV], temp_dir=out.parent)
        start = time.perf_counter()
        process_file(source, options=options, parquet_path=out)
    elif kind == "pandas":
        import pandas as pd

        start = time.perf_counter()
        frame = pd.read_csv(source)
        frame.describe(include="all")
        frame.to_parquet(out)
    else:
        raise SystemExit(f"unknown worker {kind}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(kind: str, source: Path) -> dict[str, float]:
    out = DATA / f"out-{kind}.parquet"
    result = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(source), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- report
def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT, help="DuckDB memory limit of the core")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, source, out = args.worker
        print(json.dumps(_worker(kind, Path(source), Path(out))))
        return 0

    os.environ[MEMORY_LIMIT_ENV] = args.memory_limit
    small = generate(DATA / f"mixed-{args.rows}.csv", args.rows)
    print(
        f"machine: {platform.processor() or platform.machine()}, {_cpus()} cores, Python {platform.python_version()}"
    )
    print(f"input: {small.name}, {small.stat().st_size / 1e6:.1f} MB, {args.rows:,} rows")
    print(f"headrace memory limit: {args.memory_limit}")
    kinds = ["duckdb", "headrace"] + ([] if args.skip_pandas else ["pandas"])
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(args.repeat):
        for kind in kinds:  # interleaved, so drift in machine load affects all alike
            results[kind].append(run_worker(kind, small))
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in results.items()}
    print(f"\n{'engine':<10} {'median s':>9} {'runs (s)':<24} {'peak RSS MB':>12}")
    for kind in kinds:
        runs = ", ".join(f"{r['seconds']:.2f}" for r in results[kind])
        print(f"{kind:<10} {median[kind]:>9.2f} {runs:<24} {rss[kind]:>12.0f}")
    ratio = median["headrace"] / median["duckdb"]
    print(f"\nheadrace / DuckDB time: {ratio:.2f}x  (target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})")
    if "pandas" in median:
        print(f"pandas / headrace time: {median['pandas'] / median['headrace']:.2f}x")

    large = generate(DATA / f"mixed-{args.large_rows}.csv", args.large_rows)
    big = run_worker("headrace", large)
    growth = big["peak_rss_mb"] / rss["headrace"]
    print(
        f"\nheadrace at {args.large_rows:,} rows ({large.stat().st_size / 1e6:.0f} MB): {big['seconds']:.1f} s, "
        f"peak RSS {big['peak_rss_mb']:.0f} MB = {growth:.2f}x the {args.rows:,}-row run "
        f"(target <= 1.5x: {'met' if growth <= 1.5 else 'NOT met'})"
    )
    return 0


def _cpus() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
