"""``StackOutputs.load``: every unusable outputs file is a one-line error (exit 2), never a
traceback."""

from __future__ import annotations

import pytest

from headrace.cli import main
from headrace.outputs import OutputsError, StackOutputs


def test_a_directory_is_a_clear_error(tmp_path):
    # Given a directory where the outputs file should be, then loading it says so
    with pytest.raises(OutputsError, match=r"cannot read the outputs file: Is a directory"):
        StackOutputs.load(tmp_path)


def test_a_json_array_must_be_an_object(tmp_path):
    # Given an outputs file holding a JSON array, then the error says what it must hold
    path = tmp_path / "outputs.json"
    path.write_text('["raw_bucket"]')
    with pytest.raises(OutputsError, match="it must hold a JSON object"):
        StackOutputs.load(path)


@pytest.mark.parametrize("command", [["status"], ["dlq", "inspect", "--queue", "load"], ["replay", "k"]])
def test_commands_given_a_directory_exit_2(tmp_path, capsys, command):
    # When a command that reads a stack is pointed at a directory
    code = main([*command, "--outputs", str(tmp_path)])
    # Then it exits 2 with one line on stderr
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("headrace: error: ") and "cannot read the outputs file" in err
    assert len(err.splitlines()) == 1
