"""``headrace inspect``: the summary JSON on stdout, or one error line and exit status 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import duckdb
import pytest

from handlers.logic import processing
from handlers.logic.processing import OutOfMemory
from headrace import cli

SEED = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n"


def test_a_good_file_prints_its_summary_and_writes_the_parquet(tmp_path, capsys):
    path, out = tmp_path / "sales.csv", tmp_path / "sales.parquet"
    path.write_text(SEED)
    assert cli.main(["inspect", str(path), "--parquet", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["file_name"], summary["row_count"]) == ("sales.csv", 2)
    assert duckdb.sql(f"SELECT count(*) FROM '{out}'").fetchall() == [(2,)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty (0 bytes)"),
        ("blob.csv", bytes(range(256)) * 8, "binary content"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_bad_input_is_one_error_line_and_status_2(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"headrace: error: {path}: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


def test_a_directory_is_not_a_file(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"headrace: error: {tmp_path}: not a regular file\n"


def test_running_out_of_memory_is_one_error_line(tmp_path, capsys, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise OutOfMemory("processing needed more memory than DuckDB's limit (1MB)")

    monkeypatch.setattr(processing, "process_file", out_of_memory)
    path = tmp_path / "sales.csv"
    path.write_text(SEED)
    assert cli.main(["inspect", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"headrace: error: {path}: processing needed more memory than DuckDB's limit (1MB)\n"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[{"name": "x"}]', "rule 1 (x): pattern: Field required"),
        ('[{"name": "x", "pattern": "a", "columnhint": "^x"}]', "rule 1 (x): columnhint: unknown key"),
        ('{"name": "x", "pattern": "a"}', "expected a JSON list of objects"),
        ('["x"]', "expected a JSON list of objects"),
        (
            '[{"name": "ok", "pattern": "a"}, {"name": "Bad", "pattern": "b"}]',
            "rule 2 (Bad): name: String should",
        ),
        ("[{", "Expecting"),
        ('[{"name": "email", "pattern": "x"}]', "PII rule 'email' is defined twice"),
        (
            '[{"name": "x", "pattern": "a", "column_hint": "secret\\\\Z"}]',
            "rule 1 (x): column_hint: pattern 'secret\\\\Z' is not valid in RE2",
        ),
    ],
)
def test_an_invalid_pii_rules_file_is_one_line_saying_what_is_wrong(tmp_path, capsys, content, problem):
    path, rules = tmp_path / "sales.csv", tmp_path / "rules.json"
    path.write_text(SEED)
    rules.write_text(content)
    assert cli.main(["inspect", str(path), "--pii-rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"headrace: error: {rules}: invalid PII rules file: {problem}")
    assert err.count("\n") == 1 and "pydantic" not in err


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("a-directory", "a directory; name the file to write"),
        ("missing/out.parquet", "no such directory"),
    ],
)
def test_a_parquet_path_that_cannot_be_written_is_refused_before_processing(tmp_path, capsys, where, problem):
    path = tmp_path / "sales.csv"
    path.write_text(SEED)
    (tmp_path / "a-directory").mkdir()
    out = tmp_path / where
    assert cli.main(["inspect", str(path), "--parquet", str(out)]) == 2
    assert capsys.readouterr().err == f"headrace: error: --parquet {out}: {problem}" + (
        f" {out.parent}\n" if problem == "no such directory" else "\n"
    )
    assert not (tmp_path / "missing").exists()


def test_a_parquet_path_the_writer_refuses_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "sales.csv"
    path.write_text(SEED)
    out = "/proc/headrace-test.parquet"  # passes the checks (root may write anywhere), fails to open
    code = cli.main(["inspect", str(path), "--parquet", out])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"headrace: error: --parquet {out}: ") and err.count("\n") == 1


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    # `headrace inspect f | head -1`: the pipe closes before the summary is written
    path = tmp_path / "sales.csv"
    path.write_text(SEED)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from headrace import cli; sys.exit(cli.main(sys.argv[1:]))",
            "inspect",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=60)
    # no traceback, and 141 as a shell gives `yes | head` (it was 1: for `status`, "a DLQ
    # holds messages"; for `query`, "the query failed")
    assert proc.returncode == 141
    assert stderr == b""


def test_a_stdout_that_cannot_write_the_data_is_one_error_line(tmp_path, capsys, monkeypatch):
    # Given data beyond ASCII and a stdout in ASCII (PYTHONIOENCODING=ascii; a redirect on
    # Windows is cp1252, which has no 日本 either)
    path = tmp_path / "names.csv"
    path.write_text("id,prénom\n1,Zoë\n2,Łukasz\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    # Then one line says what to set (it was a UnicodeEncodeError traceback)
    assert cli.main(["inspect", str(path)]) == 2
    assert capsys.readouterr().err == (
        "headrace: error: the output holds '\\xe9', which stdout's encoding (ascii) cannot write: "
        "set PYTHONIOENCODING=utf-8\n"
    )
