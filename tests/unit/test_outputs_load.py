"""``StackOutputs.load``: every unusable outputs file is a one-line error (exit 2), never a
traceback."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from headrace.cli import main
from headrace.outputs import OutputsError, StackOutputs
from tests.stack_outputs import STACK_OUTPUTS


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


@pytest.mark.parametrize(
    "encoded",
    [
        lambda text: text.encode("utf-8-sig"),  # PowerShell 7's utf8BOM, Notepad
        lambda text: text.encode("utf-16"),  # Windows PowerShell 5's `pulumi stack output --json > FILE`
    ],
    ids=["utf-8 with BOM", "utf-16"],
)
def test_an_outputs_file_written_on_windows_is_read(tmp_path, encoded):
    # Given the outputs of a stack, written in an encoding Windows shells use
    path = tmp_path / "outputs.json"
    path.write_bytes(encoded(json.dumps(STACK_OUTPUTS, indent=2)))
    # When it is loaded, then it is the stack's outputs
    assert StackOutputs.load(path) == StackOutputs(**STACK_OUTPUTS)


@pytest.mark.parametrize(
    "content",
    [b"", b" \n", b"\xff\xfe", "\r\n".encode("utf-16"), b"\xef\xbb\xbf"],
    ids=["empty", "blank", "utf-16 bom", "utf-16 bom and line end", "utf-8 bom"],
)
def test_an_empty_outputs_file_says_the_command_that_wrote_it_failed(tmp_path, content):
    # Given what `pulumi stack output --json > outputs.json` leaves when pulumi fails (a
    # Windows shell writes its byte order mark even so)
    path = tmp_path / "outputs.json"
    path.write_bytes(content)
    # When it is loaded, then the error says it is empty, not where JSON parsing stopped
    with pytest.raises(OutputsError, match=r"outputs.json: empty \(did the `pulumi stack output --json"):
        StackOutputs.load(path)


STACK_COMMANDS = [
    ["status"],
    ["dlq", "inspect", "--queue", "load"],
    ["replay", "incoming/k.csv"],
    ["query", "SELECT 1 FROM sales"],
    ["tenants", "list"],
    ["experiments", "run", "--suite", "smoke"],
]


@pytest.mark.parametrize("command", STACK_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_aws_profile_that_does_not_exist_is_one_line(tmp_path, monkeypatch, capsys, command):
    # Given a deployed stack's outputs (no keys of their own: the operator's credentials),
    # and AWS_PROFILE naming a profile the AWS config does not have
    path = tmp_path / "outputs.json"
    names = {"tenant_keys_table": "k", "function_names": {"processor": "p", "loader": "l"}}
    path.write_text(json.dumps({**STACK_OUTPUTS, **names}))
    (tmp_path / "config").write_text("[profile other]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.chdir(tmp_path)  # experiments run writes its results here (it must not)
    # When a command that talks to the stack runs
    code = main([*command, "--outputs", str(path)])
    # Then it is one line naming the profile, exit 2, not boto3's traceback
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err
        == "headrace: error: no AWS credentials for the stack: The config profile (nope) could not be found\n"
    )
    assert not (tmp_path / "experiments-results").exists()


def test_an_endpoint_without_its_scheme_is_an_invalid_output(tmp_path, capsys):
    # Given outputs written by hand for LocalStack, the endpoint without http://
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**STACK_OUTPUTS, "aws_endpoint_url": "localhost:4566"}))
    # When a command reads them, then the outputs file is refused, saying what is wrong,
    # not boto3's ValueError at the first client
    assert main(["status", "--outputs", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"headrace: error: {path}: not a headrace stack outputs file (invalid: aws_endpoint_url (must "
        "be a URL such as http://localhost:4566, not 'localhost:4566'))\n"
    )
    # while one with its scheme, or none at all (""), is taken
    for endpoint in ("http://localhost:4566", "https://s3.example.internal/", ""):
        path.write_text(json.dumps({**STACK_OUTPUTS, "aws_endpoint_url": endpoint}))
        assert StackOutputs.load(path).aws_endpoint_url == endpoint


def test_an_output_pulumi_hid_as_a_secret_is_named_with_the_flag_that_shows_it(tmp_path):
    # Given `pulumi stack output --json` of a stack with a secret output (without
    # --show-secrets, its value is the placeholder "[secret]")
    path = tmp_path / "dev-outputs.json"
    path.write_text(json.dumps({**STACK_OUTPUTS, "db_secret_arn": "[secret]", "stack": "[secret]"}))
    # Then loading it names the hidden outputs and the flag, instead of using "[secret]" as an ARN
    with pytest.raises(OutputsError, match=r"db_secret_arn, stack shown as '\[secret\]'.*--show-secrets"):
        StackOutputs.load(path)


def test_a_pulumi_outputs_file_without_a_required_output_names_it(tmp_path):
    # Given `pulumi stack output --json` of a stack lacking one documented output
    path = tmp_path / "dev-outputs.json"
    path.write_text(json.dumps({k: v for k, v in STACK_OUTPUTS.items() if k != "processing_dlq_url"}))
    # Then the error names it
    with pytest.raises(OutputsError, match=r"\(missing: processing_dlq_url\)$"):
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


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, ("host.docker.internal", 5432)),  # the secret's, as the loader sees it
        ({"warehouse_host": "127.0.0.1", "warehouse_port": 15432}, ("127.0.0.1", 15432)),  # LocalStack
    ],
)
def test_the_warehouse_is_reached_where_the_outputs_say(monkeypatch, extra, expected):
    # Given a stack whose database secret names the host Lambda containers use
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        secret = {
            "host": "host.docker.internal",
            "port": 5432,
            "dbname": "d",
            "username": "u",
            "password": "p",
        }
        arn = boto3.client("secretsmanager").create_secret(Name="db", SecretString=json.dumps(secret))["ARN"]
        outputs = StackOutputs(**{**STACK_OUTPUTS, "region": "us-east-1", "db_secret_arn": arn, **extra})
        connected: dict = {}
        monkeypatch.setattr("psycopg.connect", lambda **kwargs: connected.update(kwargs))
        # When a tool connects to the warehouse from this machine
        outputs.connect_warehouse()
    # Then it uses the outputs' host and port when given, the secret's otherwise
    assert (connected["host"], connected["port"]) == expected
    assert (connected["user"], connected["password"]) == ("u", "p")


@pytest.fixture
def runtime_not_running(tmp_path, monkeypatch):
    """The embedded runtime's outputs file (the default ``--outputs``), absent: not running."""
    from headrace import outputs
    from headrace.local import cli as local_cli

    default = tmp_path / ".headrace" / "local" / "outputs.json"
    monkeypatch.setattr(outputs, "DEFAULT_LOCAL_OUTPUTS", default)
    monkeypatch.setattr(local_cli, "DEFAULT_LOCAL_OUTPUTS", default)
    return default


@pytest.mark.parametrize(
    "command",
    [["status"], ["query", "SELECT 1"], ["tenants", "list"], ["local", "invoke", "processor"]],
)
def test_without_a_running_runtime_the_default_outputs_say_to_start_it(runtime_not_running, capsys, command):
    # (they said to write `pulumi stack output --json` into the runtime's private state file)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err == (
        f"headrace: error: the embedded runtime is not running (no {runtime_not_running}): start it "
        "with `headrace local up`, or pass --outputs PATH for a deployed stack\n"
    )


def test_an_outputs_file_given_that_does_not_exist_says_how_to_write_one(
    runtime_not_running, tmp_path, capsys
):
    missing = tmp_path / "outputs.json"
    assert main(["status", "--outputs", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"headrace: error: {missing}: no such outputs file (pulumi stack output --json > {missing})\n"
    )


def test_a_payload_that_is_not_json_is_named_in_the_error(runtime_not_running, capsys):
    assert main(["local", "invoke", "processor", "--payload", "notjson"]) == 2
    assert capsys.readouterr().err == (
        "headrace: error: --payload is not JSON: Expecting value: line 1 column 1 (char 0)\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["query", "SELECT 1"],
        ["tenants", "list"],
        ["dlq", "inspect", "--queue", "load"],
        ["replay", "k"],
    ],
)
def test_the_outputs_of_a_killed_runtime_say_it_is_not_running(tmp_path, capsys, command):
    # Given the outputs file a runtime killed without its cleanup left, beside its lock file
    # that nobody holds (a running runtime holds it)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**STACK_OUTPUTS, "aws_endpoint_url": "http://127.0.0.1:9"}))
    (tmp_path / "runtime.lock").write_text("12345\n")
    # When a command reads the stack
    code = main([*command, "--outputs", str(path)])
    # Then it says the runtime is not running, not that the endpoint could not be reached
    assert code == 2
    assert capsys.readouterr().err == (
        f"headrace: error: the embedded runtime that wrote {path} is not running (it stopped "
        "without removing the file: killed?); start it with `headrace local up`\n"
    )


def test_the_outputs_of_a_running_runtime_load(tmp_path):
    # Given a runtime's outputs file whose lock a running runtime holds
    import fcntl
    import os

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(STACK_OUTPUTS))
    fd = os.open(tmp_path / "runtime.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Then the file loads
        assert StackOutputs.load(path).raw_bucket == STACK_OUTPUTS["raw_bucket"]
    finally:
        os.close(fd)
