"""The processing core within DuckDB's memory limit: wide files fit, and a limit too small
for a file is reported as such, never as a fault of the file."""

from __future__ import annotations

import json

import pytest

from handlers.logic.processing import OutOfMemory, UnprocessableFile

COLUMNS, ROWS = 150, 100


def _wide_csv() -> str:
    header = ",".join(f"c{i}" for i in range(COLUMNS))
    # column i holds the values 0 .. i (cycling): i + 1 distinct values, max min(i, ROWS - 1)
    lines = (",".join(str(r % (i + 1)) for i in range(COLUMNS)) for r in range(ROWS))
    return header + "\n" + "\n".join(lines) + "\n"


def test_a_wide_file_is_described_within_a_small_memory_limit(process):
    # Given 150 columns (one query of all their exact distinct counts needed more than
    # 160 MB), When the file is processed with a 160 MB limit
    data = process("wide.csv", _wide_csv(), memory_limit="160MB").data
    # Then it completes, and every column's statistics are its own, whichever query
    # computed them
    assert data["column_count"] == COLUMNS
    for i in range(COLUMNS):
        stats = data["statistics"][f"c{i}"]
        assert (stats["distinct_count"], stats["min"], stats["max"]) == (
            min(i + 1, ROWS),
            0,
            min(i, ROWS - 1),
        ), f"c{i}"
    assert "duplicate_rows" not in data["quality_issues"]


def test_a_duplicate_row_of_a_wide_file_is_found(process):
    text = _wide_csv()
    first_row = text.splitlines()[1]
    data = process("wide.csv", text + first_row + "\n", memory_limit="160MB").data
    assert data["quality_issues"]["duplicate_rows"]["count"] == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("sales.csv", "date,product,quantity\n2025-01-01,Widget,10\n"),
        ("sales.json", json.dumps([{"date": "2025-01-01", "product": "Widget"}])),
    ],
)
def test_a_memory_limit_too_small_is_not_blamed_on_the_file(process, name, content):
    with pytest.raises(OutOfMemory, match=r"more memory than DuckDB's limit \(1MB\)") as raised:
        process(name, content, memory_limit="1MB")
    assert not isinstance(raised.value, UnprocessableFile)
