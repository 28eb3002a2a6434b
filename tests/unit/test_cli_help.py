"""``--help`` shows each command's module docstring without reStructuredText code marks."""

from __future__ import annotations

import pytest

from headrace import cli


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        ([], "The headrace command line."),
        (["status"], "headrace status: how a stack is doing"),
        (["query"], "headrace query SQL --outputs PATH:"),
        (["dlq"], "headrace dlq inspect|redrive:"),
        (["replay"], "headrace replay KEY...:"),
    ],
)
def test_help_prints_the_docstring_without_code_marks(capsys, argv, start):
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert start in out
    assert "``" not in out
