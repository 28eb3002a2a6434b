"""``--help`` shows each command's module docstring without reStructuredText code marks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_ctrl_c_is_one_line_and_exit_status_130_not_a_traceback(capsys, monkeypatch):
    # Given a command interrupted by Ctrl-C (SIGINT) mid-way: here `status`, in a boto3 call
    from headrace import status

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "run", interrupted)
    # Then the shell's status for SIGINT and one line (it was a KeyboardInterrupt traceback)
    try:
        status_code = cli.main(["status", "--outputs", "outputs.json"])
    except KeyboardInterrupt:  # caught here: escaping, it would end the whole test run
        pytest.fail("the KeyboardInterrupt escaped headrace's main()")
    assert status_code == 130
    assert capsys.readouterr().err == "headrace: interrupted\n"


def test_ctrl_c_while_the_commands_load_is_one_line_too(capsys, monkeypatch):
    # Given a Ctrl-C while the commands' modules load (boto3, DuckDB: half a second and more
    # at every start, which was a traceback of the import)
    from headrace import tenants

    def interrupted(subparsers):
        raise KeyboardInterrupt

    monkeypatch.setattr(tenants, "register", interrupted)
    # Then the same line and status as a Ctrl-C while the command runs
    try:
        status_code = cli.main(["status", "--outputs", "outputs.json"])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped headrace's main()")
    assert (status_code, capsys.readouterr().err) == (130, "headrace: interrupted\n")


def test_the_command_line_module_loads_no_command_before_main_runs():
    # `from headrace.cli import main` (the console script's first line) runs before main()
    # can catch a Ctrl-C: it must import nothing slow
    code = "import sys, headrace.cli; print(sorted({'boto3', 'duckdb', 'pyarrow', 'pydantic'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert done.stdout == "[]\n"
