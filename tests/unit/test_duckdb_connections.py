"""The processing core and the loader each keep one DuckDB per process and hand out cursors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from handlers.logic.processing import ProcessingOptions
from handlers.logic.processing.engine import connect as processing_connection
from handlers.logic.warehouse.rows import connect as loader_connection

ROOT = Path(__file__).resolve().parents[2]
SESSION_ZONES = """
from handlers.logic.processing import ProcessingOptions
from handlers.logic.processing.engine import connect
from handlers.logic.warehouse.rows import connect as loader
for con in (connect(ProcessingOptions()), loader()):
    print(con.execute("SELECT current_setting('TimeZone')").fetchone()[0])
"""


def test_every_connection_runs_in_utc_whatever_the_machine_zone():
    # the machine's zone becomes DuckDB's default; a SET on the database would not reach
    # the cursors the files use
    env = {**os.environ, "TZ": "America/New_York", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", SESSION_ZONES], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["UTC", "UTC"]


def test_files_do_not_see_each_others_temp_tables():
    for connect in (lambda: processing_connection(ProcessingOptions()), loader_connection):
        first, second = connect(), connect()
        first.execute("CREATE TEMP TABLE lineage_thresholds AS SELECT 1 AS t")
        second.execute("CREATE TEMP TABLE lineage_thresholds AS SELECT 2 AS t")
        assert first.execute("SELECT t FROM lineage_thresholds").fetchall() == [(1,)]
        first.close()
        second.close()
