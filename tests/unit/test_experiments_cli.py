"""`headrace experiments run`: arguments and stacks it cannot use are refused with one line
and exit 2, before anything is written or uploaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from headrace.cli import main
from headrace.local.emulator import free_port

OUTPUTS = {
    "raw_bucket": "raw",
    "processed_bucket": "processed",
    "reports_bucket": "reports",
    "processing_queue_url": "http://127.0.0.1:1/000000000000/processing",
    "processing_dlq_url": "http://127.0.0.1:1/000000000000/processing-dlq",
    "load_queue_url": "http://127.0.0.1:1/000000000000/load",
    "load_dlq_url": "http://127.0.0.1:1/000000000000/load-dlq",
    "metadata_table": "metadata",
    "db_secret_arn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:db",
    "alerts_topic_arn": "arn:aws:sns:us-east-1:000000000000:alerts",
    "ingest_api_url": "http://127.0.0.1:1",
    "region": "us-east-1",
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
}


def run(tmp_path, *args: str) -> int:
    return main(["experiments", "run", "--out", str(tmp_path / "out"), *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--settle-seconds", "-1"], "--settle-seconds must be a number of seconds, 0 or more (got -1)"),
        (["--settle-seconds", "nan"], "--settle-seconds must be a number of seconds, 0 or more (got nan)"),
        (["--settle-seconds", "inf"], "--settle-seconds must be a number of seconds, 0 or more (got inf)"),
        (["--max-size-mb", "0"], "--max-size-mb must be more than 0 (got 0)"),
        (["--max-size-mb", "-5"], "--max-size-mb must be more than 0 (got -5)"),
        (["--max-size-mb", "nan"], "--max-size-mb must be more than 0 (got nan)"),
        (["--only", "latency,"], "--only 'latency,': an empty experiment name"),
        (
            ["--only", "nope"],
            "unknown experiments: nope (known: latency, filesize, throughput, failure, sweep)",
        ),
        (["--suite", "smoke", "--only", "filesize"], "not in the smoke suite: filesize (it runs latency)"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    # Given arguments a run cannot honour (and an outputs file that does not exist)
    # When the run is asked for
    status = run(tmp_path, "--outputs", str(tmp_path / "missing.json"), *args)
    # Then it is refused with one line naming the problem, and exit 2
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"headrace: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_the_database_outage_adds_failure_to_a_suite_for_only(tmp_path, capsys):
    # Given --db-outage, which adds the failure experiment to the smoke suite
    status = run(
        tmp_path,
        "--outputs",
        str(tmp_path / "missing.json"),
        "--suite",
        "smoke",
        "--db-outage",
        "--only",
        "failure",
    )
    # Then --only failure is accepted (the run stops at the missing outputs file instead)
    assert status == 2
    assert "no such outputs file" in capsys.readouterr().err


def test_outputs_without_function_names_are_refused_before_anything_is_uploaded(tmp_path, capsys):
    # Given an outputs file without function_names, of a stack that does not even answer
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({**OUTPUTS, "aws_endpoint_url": f"http://127.0.0.1:{free_port()}"}))
    # When the run is asked for
    status = run(tmp_path, "--outputs", str(outputs))
    # Then it is refused with one line, exit 2, before writing or uploading anything
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("headrace: error: the outputs have no function_names for processor and loader")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_stack_that_does_not_answer_is_refused_with_one_line(tmp_path, capsys):
    # Given the outputs of a stack whose endpoint nothing listens on
    endpoint = f"http://127.0.0.1:{free_port()}"
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {**OUTPUTS, "aws_endpoint_url": endpoint, "function_names": {"processor": "p", "loader": "l"}}
        )
    )
    # When the run is asked for
    status = run(tmp_path, "--outputs", str(outputs))
    # Then it is one line naming the endpoint (no traceback), exit 2, and nothing written
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"headrace: error: the stack does not answer ({endpoint}): ")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_run_s_help_says_where_results_go_by_default(capsys):
    # Given a newcomer who runs the suite without --out
    with pytest.raises(SystemExit):
        main(["experiments", "run", "--help"])
    # Then the help names the directory the results land in, for `report --in DIR`
    assert "default experiments-results" in " ".join(capsys.readouterr().out.split())


def test_an_embedded_runtime_that_does_not_start_is_one_line_and_keeps_its_logs(
    tmp_path, capsys, monkeypatch
):
    # Given an embedded runtime whose emulator exits at start (its log in the state directory)
    from headrace.local.emulator import EmulatorError
    from headrace.local.runtime import LocalRuntime

    def start(self: LocalRuntime) -> LocalRuntime:
        log = self.state_dir / "logs" / "emulator.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("Traceback ...\n")
        raise EmulatorError(f"the emulator exited with status 1 (see {log})")

    monkeypatch.setattr(LocalRuntime, "start", start)
    # When a run asks for it
    status = run(tmp_path, "--local", "--suite", "smoke")
    # Then it is one error line and exit 2, and the log it points at is still there
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("headrace: error: ")]
    assert status == 2
    assert "Traceback" not in err
    assert len(errors) == 1 and errors[0].startswith(
        "headrace: error: the embedded runtime did not start: "
    ), err
    log = Path(errors[0].rsplit("(see ", 1)[1].rstrip(")"))
    assert log.read_text() == "Traceback ...\n"
    assert not (tmp_path / "out").exists()
    shutil.rmtree(log.parents[1])


def test_an_out_that_cannot_be_written_is_refused_with_one_line(tmp_path, capsys, monkeypatch):
    # Given a stack that answers, and an --out that is a file
    from headrace.experiments.stack import ExperimentStack

    monkeypatch.setattr(ExperimentStack, "check", lambda self: None)
    uploads: list[str] = []
    monkeypatch.setattr(ExperimentStack, "upload", lambda self, name, *a, **k: uploads.append(name))
    outputs = tmp_path / "outputs.json"
    names = {"function_names": {"processor": "p", "loader": "l"}}
    outputs.write_text(
        json.dumps({**OUTPUTS, **names, "aws_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    )
    out = tmp_path / "results"
    out.write_text("not a directory")
    # When the run is asked for
    status = main(["experiments", "run", "--outputs", str(outputs), "--suite", "smoke", "--out", str(out)])
    # Then it is refused with one line, exit 2, before anything is uploaded
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"headrace: error: {out}: cannot write the results there: File exists\n"
    assert uploads == []
