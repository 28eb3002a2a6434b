"""The configuration the embedded runtime deploys the program with: the `local` stack file,
the runtime's own settings and ``local up --config KEY=VALUE``, validated as the program
validates it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pulumi
import pytest

from headrace import cli
from headrace.local.cli import config_overrides, config_setting
from headrace.local.deploy import deploy, stack_file_warnings
from headrace.local.emulator import REGION
from headrace.local.runtime import EMBEDDED_CONFIG, LocalRuntime, RuntimeConfigError

ROOT = Path(__file__).resolve().parents[2]


def no_client(service: str) -> Any:
    raise AssertionError(f"the program went on to create resources ({service}) with an invalid configuration")


def test_a_top_level_key_the_program_does_not_know_is_refused_as_pulumi_up_refuses_it(monkeypatch):
    # (the embedded deploy did not pass the program the keys the stack sets, so a misspelt
    # top-level key was ignored and its default used, where `pulumi up` refuses it)
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    with pytest.raises(pulumi.RunError, match="headrace:retension: unknown key"):
        deploy(ROOT, no_client, REGION, overrides={"headrace:retension": {"raw_days": 1}})
    assert "PULUMI_CONFIG" not in os.environ  # the process's environment as it was


# ---------------------------------------------------------------------- local up --config
@pytest.mark.parametrize(
    ("setting", "parsed"),
    [
        ("functions.processor.timeout_seconds=120", ("headrace:functions.processor.timeout_seconds", 120)),
        ("headrace:functions.loader.timeout_seconds=60", ("headrace:functions.loader.timeout_seconds", 60)),
        ('pii.disabled_rules=["phone", "email"]', ("headrace:pii.disabled_rules", ["phone", "email"])),
        ("catalog.enabled=false", ("headrace:catalog.enabled", False)),
        ("alarms.oldest_message_seconds=null", ("headrace:alarms.oldest_message_seconds", None)),
        ("functions.processor.log_level=INFO", ("headrace:functions.processor.log_level", "INFO")),
        ('raw_prefix="0123"', ("headrace:raw_prefix", "0123")),  # JSON-quoted: a string
        ("reporting.schedule=cron(0 6 * * ? *)", ("headrace:reporting.schedule", "cron(0 6 * * ? *)")),
        ("ingest.endpoint=", ("headrace:ingest.endpoint", "")),
        (
            'functions={"processor": {"batch_size": 5}}',
            ("headrace:functions", {"processor": {"batch_size": 5}}),
        ),
    ],
)
def test_a_setting_is_a_key_path_in_the_namespace_and_a_json_or_text_value(setting, parsed):
    assert config_setting(setting) == parsed


def test_settings_nest_under_their_top_level_key_and_a_later_one_wins():
    overrides = config_overrides(
        [
            config_setting("functions.processor.timeout_seconds=120"),
            config_setting("headrace:functions.loader.timeout_seconds=300"),
            config_setting("functions.processor.timeout_seconds=90"),
            config_setting('pii.disabled_rules=["phone"]'),
        ]
    )
    assert overrides == {
        "headrace:functions": {"processor": {"timeout_seconds": 90}, "loader": {"timeout_seconds": 300}},
        "headrace:pii": {"disabled_rules": ["phone"]},
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("functions.processor.timeout_seconds", "is not KEY=VALUE"),
        ("aws:region=eu-west-1", "only keys of the headrace: namespace can be set"),
        ("functions..timeout_seconds=1", "'functions..timeout_seconds' is not a key path"),
        ("=1", "'' is not a key path"),
        ("pii.extra_rules[0].name=x", "list elements cannot be set one by one; set the whole list"),
        ("pii.disabled_rules=[phone]", "pii.disabled_rules: '[phone]' is not JSON"),
    ],
)
def test_a_malformed_setting_is_one_argparse_error_naming_it(capsys, setting, message):
    with pytest.raises(SystemExit) as exited:
        cli.main(["local", "up", "--config", setting])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith("usage: headrace local up")
    last = err.splitlines()[-1]  # argparse's usage, then one line naming the argument
    assert last.startswith("headrace local up: error: argument --config: ") and message in last


def _nothing_may_start(self: LocalRuntime) -> None:
    raise AssertionError("the runtime started with an invalid configuration")


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        (
            "functions.processor.timeuot_seconds=120",
            "headrace:functions.processor.timeuot_seconds: unknown key",
        ),
        ("retension.raw_days=1", "headrace:retension: unknown key"),
        (
            "functions.processor.timeout_seconds=1000",
            "headrace:functions.processor.timeout_seconds: must be ≤ 900",
        ),
        ('pii.disabled_rules=["nope"]', "headrace:pii.disabled_rules: unknown rules: nope"),
        ("warehouse.external.host=10.0.0.1", "headrace:warehouse.external: set by the embedded runtime"),
        ("db_password=secret", "headrace:db_password: set by the embedded runtime"),
    ],
)
def test_an_invalid_setting_fails_with_the_programs_message_before_anything_starts(
    capsys, monkeypatch, setting, problem
):
    monkeypatch.setattr(LocalRuntime, "_claim", _nothing_may_start)
    code = cli.main(["local", "up", "--port", "45901", "--api-port", "45902", "--config", setting])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("headrace: error: ") and problem in captured.err
    assert captured.err.count("\n") == 1  # one line
    assert "(--config)" in captured.out  # the setting was shown first


@pytest.mark.parametrize(("command", "watches"), [("up", True), ("demo", False)])
def test_local_up_watches_the_code_it_serves_and_local_demo_does_not(monkeypatch, command, watches):
    # `local up` is the edit loop (a handler edit reaches the next invocation); the demo
    # checks the samples against the code as it is, and the tests build runtimes without it
    seen: list[bool] = []

    def stop_here(self: LocalRuntime) -> None:
        seen.append(self.watch_code)
        raise RuntimeConfigError("stopped by the test")

    monkeypatch.setattr(LocalRuntime, "check_config", stop_here)
    assert cli.main(["local", command, "--port", "45901", "--api-port", "45902"]) == 2
    assert seen == [watches]
    assert LocalRuntime(ROOT).watch_code is False


def test_local_demo_draws_wider_than_80_columns_into_a_log(monkeypatch):
    # Given `local demo` writing to a pipe or file (make demo in CI), not a terminal
    from headrace.local import cli as local_cli
    from headrace.local import demo

    widths: list[int] = []
    monkeypatch.setattr(demo, "run", lambda root, console, **_: widths.append(console.width) or 0)
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    # Then its table and paths are drawn for a log's width, not rich's 80 columns
    assert cli.main(["local", "demo", "--port", "45901", "--api-port", "45902"]) == 0
    assert widths == [local_cli.DEMO_LOG_WIDTH] and local_cli.DEMO_LOG_WIDTH > 80


def test_the_settings_reach_the_configuration_the_program_is_deployed_with():
    runtime = LocalRuntime(
        ROOT, overrides=config_overrides([config_setting("functions.loader.timeout_seconds=300")])
    )
    runtime.check_config()  # valid: the stack file, EMBEDDED_CONFIG and the setting
    config = runtime._config({"host": "127.0.0.1"}, "pw")
    assert config["headrace:functions"]["loader"] == {
        **EMBEDDED_CONFIG["headrace:functions"]["loader"],
        "timeout_seconds": 300,
    }
    assert config["headrace:functions"]["processor"] == EMBEDDED_CONFIG["headrace:functions"]["processor"]


def test_the_embedded_report_has_lambda_s_longest_timeout_for_a_busy_day():
    # (60 s held about 8,000 files of a day: the emulator reads a day's items at ~7 ms each)
    # Given the configuration the embedded runtime deploys, without --config
    config = LocalRuntime(ROOT)._config({"host": "127.0.0.1"}, "pw")
    # Then the report function may run as long as Lambda lets one run
    assert config["headrace:functions"]["report"]["timeout_seconds"] == 900


def test_local_up_prints_the_executors_lines_as_they_are_one_line_each(monkeypatch, capsys):
    # An object key, a request path or an error message is quoted in these lines: rich took
    # `[bold]` for a style and raised on `[/]` (the line and the rest of its batch were lost,
    # an HTTP API request got no answer), and wrapped them at 80 columns in a log file
    line = (
        "headrace-local-processor ok     incoming/sales/[bold]q1[/bold] [/] [red]x.csv  "
        "(  1621 ms cold)  and enough text to pass the eighty columns of a pipe"
    )

    def print_then_stop(self: LocalRuntime) -> None:
        assert self.on_invocation is not None
        self.on_invocation(line)
        raise RuntimeConfigError("stopped by the test")

    monkeypatch.setattr(LocalRuntime, "check_config", print_then_stop)
    assert cli.main(["local", "up", "--port", "45901", "--api-port", "45902"]) == 2
    assert capsys.readouterr().out.splitlines() == [line]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "config:\n  headrace:functions:\n    processor: {timeout_seconds: 10\n",
            "Pulumi.local.yaml is not valid YAML, line 4, column 1: expected ',' or '}', but got '<stream end>'",
        ),
        ("config:\n\tx: 1\n", "Pulumi.local.yaml is not valid YAML, line 2, column 1: found character '\\t'"),
        (
            "config:\n  - headrace:region\n",
            "Pulumi.local.yaml: its config: is not a mapping of keys to values",
        ),
        ("- config\n", "Pulumi.local.yaml: not a mapping with a config: section"),
        (None, "cannot read "),
    ],
)
def test_a_stack_file_that_cannot_be_read_is_one_error_line_naming_it(
    tmp_path, capsys, monkeypatch, text, error
):
    # (an edit of Pulumi.local.yaml saved while `local up` ran, then a restart: a yaml
    # traceback naming "<unicode string>")
    for name in ("__main__.py", "Pulumi.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    if text is not None:
        (tmp_path / "Pulumi.local.yaml").write_text(text)
    with pytest.raises(RuntimeConfigError) as raised:
        LocalRuntime(tmp_path, state_dir=tmp_path / "state").check_config()
    assert error in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "state").exists()  # nothing started


def test_a_key_set_twice_in_the_stack_file_is_accepted_as_pulumi_does_with_a_warning_naming_it(
    tmp_path, caplog
):
    # Pulumi reads stack files leniently (go-yaml v2: the last value wins, silently); an
    # edit of the first one would change nothing, without a word
    for name in ("__main__.py", "Pulumi.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    text = (ROOT / "Pulumi.local.yaml").read_text()
    lines = text.splitlines()
    prefix, ratio = (
        lines.index("  headrace:raw_prefix: incoming/") + 1,
        lines.index("    duration_p99_ratio: 0.8") + 1,
    )
    text = text.replace(
        "    duration_p99_ratio: 0.8\n", "    duration_p99_ratio: 0.8\n    duration_p99_ratio: 0.5\n"
    )
    (tmp_path / "Pulumi.local.yaml").write_text(text + "  headrace:raw_prefix: landing/\n")
    with caplog.at_level(logging.WARNING, logger="headrace.local"):
        LocalRuntime(tmp_path, state_dir=tmp_path / "state").check_config()
    assert [r.getMessage() for r in caplog.records] == [
        f"Pulumi.local.yaml, line {ratio + 1}: headrace:alarms.duration_p99_ratio is set again "
        f"(first on line {ratio}); the last value is used, as Pulumi uses it",
        f"Pulumi.local.yaml, line {len(lines) + 2}: headrace:raw_prefix is set again (first on line {prefix}); "
        "the last value is used, as Pulumi uses it",
    ]
    assert not (tmp_path / "state").exists()  # nothing started


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_the_shipped_stack_files_set_each_key_once(stack):
    assert stack_file_warnings(ROOT, stack) == []
