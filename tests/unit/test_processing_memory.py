"""The processing core within DuckDB's memory limit: wide files fit, and a limit too small
for a file is reported as such, never as a fault of the file."""

from __future__ import annotations

import errno
import gzip
import json
import re

import pytest

from handlers.logic.processing import OutOfMemory, OutOfScratchSpace, engine, textfile

COLUMNS, ROWS = 150, 100


def _value(column: int, row: int) -> str:
    if column % 10 == 9:  # a text column; every fifth value holds an e-mail address
        return f"user{row}@example.com" if row % 5 == 0 else f"note {row % (column + 1)}"
    return str(row % (column + 1))  # column i holds 0 .. i, cycling


def _wide_csv() -> str:
    header = ",".join(f"c{i}" for i in range(COLUMNS))
    lines = (",".join(_value(i, r) for i in range(COLUMNS)) for r in range(ROWS))
    return header + "\n" + "\n".join(lines) + "\n"


def test_a_wide_file_is_described_within_a_small_memory_limit(process):
    # Given 150 columns (one query of all their statistics needs more than 160 MB), When
    # the file is processed with a 160 MB limit
    data = process("wide.csv", _wide_csv(), memory_limit="160MB").data
    # Then it completes, and every column's statistics are its own, whichever query
    # computed them
    assert data["column_count"] == COLUMNS
    for i in range(COLUMNS):
        stats = data["statistics"][f"c{i}"]
        values = [_value(i, r) for r in range(ROWS)]
        if i % 10 == 9:
            assert data["schema"][f"c{i}"] == "string"
            assert data["pii_redactions"][f"c{i}"] == {"email": ROWS // 5}, f"c{i}"
            assert stats["distinct_count"] == len(set(values)) - ROWS // 5 + 1, f"c{i}"  # one token
        else:
            numbers = [int(v) for v in values]
            assert (stats["distinct_count"], stats["min"], stats["max"]) == (
                len(set(numbers)),
                min(numbers),
                max(numbers),
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
    # (the JSON reader once called any DuckDB error "invalid JSON")
    with pytest.raises(OutOfMemory, match=r"more memory than DuckDB's limit \(1MB\)"):
        process(name, content, memory_limit="1MB")


def test_spill_files_filling_the_disk_are_not_blamed_on_memory(process, monkeypatch):
    # Given DuckDB may spill only 1 MB to disk (as when the scratch space is full), When a
    # file needs more than its memory limit and that
    connect = engine.connect

    def small_disk(options):
        con = connect(options)
        con.execute("SET max_temp_directory_size = '1MB'")
        return con

    monkeypatch.setattr(engine, "connect", small_disk)
    rows = "".join(f"{i},text number {i} {'x' * 40}\n" for i in range(200_000))
    # Then the error names the scratch space, not the memory
    with pytest.raises(OutOfScratchSpace, match=r"the scratch space filled up \(.*, [\d,]+ MB\)"):
        process("big.csv", "id,note\n" + rows, memory_limit="24MB", threads=1)


def test_a_full_disk_while_decompressing_is_not_called_a_corrupt_gzip(tmp_path):
    # Given the decompressed copy's file system is full (/dev/full answers ENOSPC) at the
    # first write, of a megabyte
    source = tmp_path / "data.csv.gz"
    content = b"a,b\n" + b"1,2\n" * 300_000
    source.write_bytes(gzip.compress(content))
    (tmp_path / "decompressed").symlink_to("/dev/full")
    # Then the scratch space is named, with the sizes that tell a compression bomb (a few
    # MB that decompress to gigabytes) from a large file: only "the scratch space filled
    # up" was said, however small the file
    with pytest.raises(OutOfScratchSpace) as raised:
        textfile.prepare(source, tmp_path, "cp1252")
    assert re.fullmatch(
        rf"the gzip file \({source.stat().st_size:,} bytes\) decompressed to more than the scratch "
        r"space holds \([\d,]+ MB\): it had given 1,048,576 bytes when the space filled up",
        str(raised.value),
    )
    assert isinstance(raised.value.__cause__, OSError) and raised.value.__cause__.errno == errno.ENOSPC


@pytest.mark.parametrize(
    "content",
    [
        # decompressed, its lone CRs made LF, transcoded: three copies were kept
        gzip.compress("name\rJosé\r".encode("cp1252")),
        # UTF-16: transcoded, then its lone CRs made LF
        "name\rJosé\r".encode("utf-16"),
        # after leading NULs (a log truncated in place), then transcoded
        b"\x00" * 10 + "name\nJosé\n".encode("cp1252"),
    ],
)
def test_each_copy_of_the_text_replaces_the_one_before_on_the_scratch_space(tmp_path, content):
    source = tmp_path / "data.csv"
    source.write_bytes(content)
    work = tmp_path / "work"
    work.mkdir()
    text = textfile.prepare(source, work, "cp1252")
    # Then only the text to read is left in the scratch space, beside the file as it came
    assert [p.name for p in work.iterdir()] == [text.path.name]
    assert text.path.read_text(encoding="utf-8") == "name\nJosé\n"
    assert source.read_bytes() == content


def test_records_wrapped_in_an_object_fit_the_memory_a_top_level_array_does(process):
    # {"meta": ..., "records": [...]}: finding the array of records took a copy of the
    # document per key; a 22 MB one ran out of a 500 MB limit (66 MB out of 1 GB)
    records = [{"id": i, "name": f"n{i}", "amount": i * 1.5} for i in range(400_000)]
    text = json.dumps({"meta": {"count": len(records)}, "records": records})
    data = process("wrapped.json", text, memory_limit="500MB").data
    assert (data["row_count"], data["schema"]) == (
        400_000,
        {"id": "int", "name": "string", "amount": "float"},
    )


def test_records_wrapped_in_an_object_are_read_as_a_stream(process):
    # Given 200,000 records under "records" (12 MB), brackets inside strings before, within
    # and after the array, and a 64 MB limit (the whole object, read at once, needed more)
    records = ",\n".join(json.dumps({"id": i, "text": f'row {i} "quoted", ] and {{'}) for i in range(200_000))
    document = (
        '{"meta": {"note": "a ] and a [ in a string", "tags": ["x"]}, "records": [\n'
        f'{records}\n], "next": {{"cursor": "]"}}}}\n'
    )
    result = process("page.json", document, memory_limit="64MB")
    # Then every record is a row, in order, and nothing else is
    assert result.data["row_count"] == 200_000
    assert result.rows("id, text")[-1] == (199_999, 'row 199999 "quoted", ] and {')
    assert result.rows("min(id), max(id), count(DISTINCT id)") == [(0, 199_999, 200_000)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"meta": nonsense, "data": [{"a": 1}]}', "invalid JSON"),
        ('{"da\\qta": [{"a": 1}]}', "invalid JSON"),
    ],
)
def test_invalid_json_around_wrapped_records_is_refused_as_before(process, content, message):
    # the scan for the array read only brackets and strings: junk beside the array was
    # accepted, and a key with a bad escape a traceback
    with pytest.raises(engine.UnprocessableFile, match=message):
        process("page.json", content)
