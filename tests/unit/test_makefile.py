"""Makefile targets that touch the checkout keep what the embedded runtime relies on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_clean_keeps_the_embedded_runtime_s_state(tmp_path):
    # Given a checkout with caches, a build, a LocalStack outputs file, and the state of a
    # runtime killed with SIGKILL: the note of the PostgreSQL it left running
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for path in (
        ".venv/bin/python",
        ".ruff_cache/x",
        ".headrace/build/code.zip",
        ".headrace/localstack-outputs.json",
        ".headrace/local/postgres-dir",
        ".headrace/local/outputs.json",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    # When the checkout is cleaned
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)
    # Then the caches and the build are gone, but the runtime's state stays: the next
    # `headrace local up` stops that PostgreSQL only through the note (README)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        ".headrace/local/outputs.json",
        ".headrace/local/postgres-dir",
        "Makefile",
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_clean_works_without_a_headrace_directory(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)
