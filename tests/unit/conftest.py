from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import duckdb
import pytest

from handlers.logic.processing import ProcessingOptions, Summary, process_file


class Processed:
    """A processed file: its summary and the rows of its Parquet output."""

    def __init__(self, summary: Summary, parquet: Path):
        self.summary = summary
        self.parquet = parquet
        self.data: dict[str, Any] = summary.to_json_dict()

    def rows(self, columns: str = "*") -> list[tuple]:
        return duckdb.sql(f"SELECT {columns} FROM read_parquet('{self.parquet}')").fetchall()

    def parquet_types(self) -> dict[str, str]:
        return {
            name: str(kind)
            for name, kind, *_ in duckdb.sql(
                f"DESCRIBE SELECT * FROM read_parquet('{self.parquet}')"
            ).fetchall()
        }


@pytest.fixture
def process(tmp_path: Path):
    def run(name: str, content: bytes | str, *, gz: bool = False, **options: Any) -> Processed:
        raw = content.encode() if isinstance(content, str) else content
        if gz:
            raw = gzip.compress(raw)
        path = tmp_path / name
        path.write_bytes(raw)
        out = tmp_path / f"{name}.parquet"
        summary = process_file(path, options=ProcessingOptions(**options), parquet_path=out)
        return Processed(summary, out)

    return run
