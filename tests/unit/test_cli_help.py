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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["local", "up", "--port", "70000"], "'70000' is not a TCP port (1-65535)"),
        (["local", "demo", "--api-port", "0"], "'0' is not a TCP port (1-65535)"),
        (["local", "demo", "--port", "x"], "'x' is not a TCP port (1-65535)"),
    ],
)
def test_a_port_out_of_range_is_one_error_line(capsys, argv, message):
    # (70000 and -1 were an OverflowError traceback; 0 a 30 s wait for an answer)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_one_port_for_both_servers_is_refused_before_anything_starts(capsys):
    # (the whole runtime started, then the API server failed with a traceback)
    assert cli.main(["local", "up", "--port", "45999", "--api-port", "45999"]) == 2
    assert capsys.readouterr().err == "headrace: error: --port and --api-port are both 45999\n"
