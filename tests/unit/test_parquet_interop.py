"""The processed Parquet as other engines read it: pyarrow and pandas over the Hive-style
layout (docs/query.md, "The processed layout")."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from handlers.logic.layout import PARTITION_KEY


def _in_layout(parquet: Path, root: Path, day: str, name: str) -> None:
    folder = root / "dataset=sales" / f"{PARTITION_KEY}={day}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(parquet, folder / name)


def test_a_file_column_named_like_the_partition_key_does_not_meet_the_paths(process, tmp_path):
    # Given a file with its own ingest_date column (any case), beside a file without one
    own = process("own.csv", "id,Ingest_Date\n1,2024-12-31\n2,2024-12-30\n")
    other = process("other.csv", "id\n3\n")
    root = tmp_path / "parquet"
    _in_layout(own.parquet, root, "2026-12-07", "own.parquet")
    _in_layout(other.parquet, root, "2026-12-08", "other.parquet")

    # Then the file's column is renamed, as a reserved name is, and says so
    assert list(own.data["schema"]) == ["id", "Ingest_Date_source"]
    assert "'Ingest_Date' (column 2) -> 'Ingest_Date_source'" in own.data["warnings"][0]

    # When pyarrow (and so pandas' read_parquet) reads the dataset's folder, discovering the
    # partition from the path: before, it refused the whole dataset ("Unable to merge: Field
    # ingest_date has incompatible types: date32[day] vs dictionary")
    table = pq.read_table(root / "dataset=sales").sort_by("id")

    # Then both columns are there: the partition's and the file's own values
    assert table.column(PARTITION_KEY).to_pylist() == ["2026-12-07", "2026-12-07", "2026-12-08"]
    assert table.column("Ingest_Date_source").to_pylist() == [
        dt.date(2024, 12, 31),
        dt.date(2024, 12, 30),
        None,
    ]
