"""Makefile targets that touch the checkout keep what the embedded runtime relies on."""

from __future__ import annotations

import re
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


def _targets() -> set[str]:
    """The Makefile's targets, its variables' names resolved ($(LOCAL_OUTPUTS))."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(\S*)", text, re.M))
    targets: set[str] = set()
    for names in re.findall(r"^([^\s#=:][^:=]*):(?!=)", text, re.M):
        targets |= {re.sub(r"\$\((\w+)\)", lambda m: variables[m[1]], name) for name in names.split()}
    return targets


def test_every_make_command_the_docs_show_is_a_target():
    targets = _targets()
    assert {"demo", "test", "e2e-aws", ".headrace/localstack-outputs.json"} <= targets
    # Given every `make ...` command in the code of the README, CONTRIBUTING.md and
    # docs/*.md: a code span that starts with it, or a line of a code block that runs it
    # (`make e2e-aws STACK=dev` sets a variable; `make ...` stands for any)
    shown = []
    for document in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = document.read_text()
        blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
        spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in [*(line for block in blocks for line in block.splitlines()), *spans]:
            for command in re.findall(r"(?:^|&&|;|\$ )\s*make((?: +[^\s#&;|)]+)+)", line):
                shown += [(document.name, w) for w in command.split() if "=" not in w and w != "..."]
    assert len(shown) > 20
    # Then each names a target of the Makefile
    wrong = sorted({(name, word) for name, word in shown if word not in targets})
    assert wrong == [], wrong
