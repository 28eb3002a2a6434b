"""The stack configuration model: both stack files, defaults, and errors that name the key."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from components.config import (
    FUNCTION_DEFAULTS,
    INGEST_MIN_TIMEOUT_SECONDS,
    LAMBDA_ENVIRONMENT_BYTES,
    LOADER_MIN_TIMEOUT_SECONDS,
    PROCESSOR_GENERATED_ENVIRONMENT_BYTES,
    AwsSettings,
    ConfigError,
    ConsumerSettings,
    Ingest,
    StackConfig,
    aws_keys,
    aws_warnings,
    check_stack_name,
    config_warnings,
    licensed_localstack_warnings,
    load_aws_settings,
    load_config,
    parse_config,
)
from components.queues import visibility_timeout
from handlers.dal import aws
from handlers.dal.warehouse import CONNECT_TIMEOUT_SECONDS
from handlers.logic.time_budget import TimeBudget
from handlers.models.ingest import IngestApiSettings
from handlers.models.ingest_worker import IngestWorkerSettings
from handlers.models.settings import ProcessorSettings
from tests.tls import authority

from .conftest import ROOT, engine_config, stack_file_config

BASE = {"environment": "dev", "region": "eu-west-1"}


class FakeReader:
    """pulumi.Config("headrace") (or another namespace) over a stack's engine config."""

    def __init__(self, config: Mapping[str, str], namespace: str = "headrace"):
        self.config = config
        self.namespace = namespace

    def get(self, key: str) -> str | None:
        return self.config.get(f"{self.namespace}:{key}")


def load_stack(stack: str) -> StackConfig:
    config = engine_config(stack_file_config(stack))
    return load_config(FakeReader(config), present_keys=config)


def errors_of(values: Mapping[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(values)
    return caught.value.problems


def test_dev_stack_file_is_valid_and_targets_aws() -> None:
    # Given Pulumi.dev.yaml
    # When it is loaded as the engine passes it
    config = load_stack("dev")
    # Then it is the AWS pipeline with an RDS warehouse and an HTTP API
    assert (config.environment, config.target, config.aws_region) == ("dev", "aws", "eu-west-1")
    assert config.warehouse.mode == "rds" and config.ingest.endpoint == "http_api"
    assert config.functions.architecture == "arm64" and config.functions.runtime == "python3.12"
    assert config.tracing is True
    assert config.rds_deletion_protection is False  # dev stacks can be destroyed


def test_dev_stack_file_holds_the_defaults() -> None:
    # as its header says: a default changed in the model but not in the file (the rotated
    # logs' suffixes) left dev, LocalStack and the embedded runtime without it
    assert load_stack("dev").model_dump() == parse_config(BASE).model_dump()
    assert load_stack("local").raw_suffixes == parse_config(BASE).raw_suffixes


def test_local_stack_file_is_valid_and_targets_localstack() -> None:
    # Given Pulumi.local.yaml
    config = load_stack("local")
    # Then it is LocalStack with an external PostgreSQL, a function URL and no X-Ray
    assert (config.environment, config.target) == ("local", "localstack")
    assert config.localstack_endpoint == "http://localhost:4566"
    assert config.warehouse.mode == "external" and config.warehouse.external is not None
    assert config.ingest.endpoint == "function_url"
    assert config.tracing is False
    # and keys it does not set keep their defaults
    assert config.queues.max_receive_count == 5


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.append(key)
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys.extend(_keys(candidate, key + "."))
    return keys


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_stack_files_are_complete(stack: str) -> None:
    # Given the model's top-level keys
    # Then each stack file sets every one of them (the LocalStack URL only where it applies)
    present = {key.split(":", 1)[1] for key in stack_file_config(stack)}
    expected = {key for key in _keys(StackConfig) if "." not in key}
    if stack == "dev":
        expected.discard("localstack_endpoint")
    assert expected <= present, sorted(expected - present)


def _set_in(values: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every key a stack file sets, nested ones as their --path spelling."""
    keys = set()
    for key, value in values.items():
        keys.add(prefix + key)
        if isinstance(value, Mapping):
            keys |= _set_in(value, f"{prefix}{key}.")
    return keys


def test_the_keys_the_dev_stack_file_leaves_out_are_the_ones_deploy_md_names() -> None:
    # Given the keys Pulumi.dev.yaml leaves out (the README sends readers to docs/deploy.md
    # for them: the file "sets nearly every key")
    present = _set_in({key.split(":", 1)[1]: value for key, value in stack_file_config("dev").items()})
    functions = "|".join(FUNCTION_DEFAULTS)
    left_out = {
        re.sub(
            rf"^functions\.({functions})\.",
            "",
            re.sub(r"^warehouse\.external\..*", "warehouse.external", key),
        )
        for key in _keys(StackConfig)
        if key not in present
    }
    # When docs/deploy.md names the exceptions
    documentation = " ".join((ROOT / "docs" / "deploy.md").read_text().split())
    said = re.search(
        r"`Pulumi\.dev\.yaml` sets every key with its default and a comment \(but (.*?)\);", documentation
    )
    assert said is not None
    named = set(re.findall(r"`([a-z_.]+)`", said[1]))
    # Then it names each of them, and no key the file does set
    assert sorted(left_out - named) == []
    assert sorted(named - left_out) == []


def test_every_key_is_documented() -> None:
    # Given every key of the model, nested ones included (per-function keys once, as
    # functions.<name>.<key>)
    documentation = (ROOT / "docs" / "deploy.md").read_text()
    functions = "|".join(FUNCTION_DEFAULTS)
    keys = {re.sub(rf"^functions\.({functions})\.", "functions.<name>.", key) for key in _keys(StackConfig)}
    # Then docs/deploy.md documents each of them, and the secret db_password
    missing = sorted(key for key in [*keys, "db_password"] if f"`{key}`" not in documentation)
    assert missing == []
    # and the keys of the aws: namespace the program reads
    assert sorted(key for key in aws_keys() if f"`aws:{key}`" not in documentation) == []


def _declared_limits(model: type[BaseModel], prefix: str = "") -> dict[str, set[float]]:
    """key -> the limits its field declares (ge, gt, le, lt), but the lower bounds 0 and 1."""
    found: dict[str, set[float]] = {}
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        limits = {
            value
            for constraint in field.metadata
            for kind in ("ge", "gt", "le", "lt")
            if (value := getattr(constraint, kind, None)) is not None
            and not (kind in ("ge", "gt") and value in (0, 1))
        }
        if limits:
            found[key] = limits
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found.update(_declared_limits(candidate, key + "."))
    return found


# Declared limits a stricter check supersedes, which the table gives instead.
STRICTER = {
    ("queues.message_retention_seconds", 60): "must exceed `max_receive_count` times",
    ("queues.message_retention_seconds", 1_209_600): "1,209,299",
    ("warehouse.rds.max_allocated_gb", 20): "at least 10 % above `allocated_gb`",
}


def test_the_limits_of_every_key_are_in_its_row_of_deploy_md() -> None:
    # Given each key's row in docs/deploy.md's tables (per-function keys once, as
    # functions.<name>.<key>) and the limits the model declares for it
    rows = {}
    for line in (ROOT / "docs" / "deploy.md").read_text().splitlines():
        for key in re.findall(r"`([a-z0-9_.<>]+)`", line.split(" | ")[0] if line.startswith("| `") else ""):
            rows[key] = line
    functions = "|".join(FUNCTION_DEFAULTS)
    missing = []
    for key, limits in _declared_limits(StackConfig).items():
        key = re.sub(rf"^functions\.({functions})\.", "functions.<name>.", key)
        for limit in limits:
            number = int(limit) if float(limit).is_integer() else limit
            spellings = (
                {STRICTER[(key, number)]} if (key, number) in STRICTER else {f"{number}", f"{number:,}"}
            )
            # Then the row says it, so a value the preview refuses is no surprise
            if not any(
                re.search(rf"(?<![\d.])(?<!\d,){re.escape(s)}(?!\d|,\d)", rows.get(key, ""))
                for s in spellings
            ):
                missing.append((key, number))
    assert sorted(set(missing)) == [], sorted(set(missing))


def test_partial_function_settings_keep_the_other_defaults() -> None:
    # Given a stack that sets only the processor's memory
    config = parse_config({**BASE, "functions": {"processor": {"memory_mb": 3008}}})
    # Then the processor's other settings and the other functions keep their defaults
    assert config.functions.processor.memory_mb == 3008
    assert config.functions.processor.timeout_seconds == 300
    assert config.functions.processor.batch_size == 5
    assert config.functions.loader.max_concurrency == 2


def test_scalars_arrive_as_strings_and_are_coerced() -> None:
    # Given config values as the engine passes them (all strings)
    reader = FakeReader(
        {
            "headrace:environment": "prod",
            "headrace:region": "us-west-2",
            "headrace:queues": '{"max_receive_count": "3"}',
            "headrace:raw_suffixes": '[".csv"]',
        }
    )
    config = load_config(reader)
    # Then numbers, lists and objects are decoded, and prod turns deletion protection on
    assert config.queues.max_receive_count == 3
    assert config.raw_suffixes == (".csv",)
    assert config.rds_deletion_protection is True


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {**BASE, "functions": {"processor": {"timeout_seconds": 901}}},
            "headrace:functions.processor.timeout_seconds: must be ≤ 900",
        ),
        (
            {**BASE, "functions": {"processor": {"memory_mb": 64}}},
            "headrace:functions.processor.memory_mb: must be ≥ 128",
        ),
        (
            {**BASE, "functions": {"processor": {"memory_mb": 256}}},
            "headrace:functions.processor.memory_mb: must be ≥ 512",
        ),
        (
            {**BASE, "functions": {"ingest": {"timeout_seconds": 60}}},
            "headrace:functions.ingest.timeout_seconds: must be ≤ 30",
        ),
        (  # the API would answer every request 503 without calling anything
            {**BASE, "functions": {"ingest": {"timeout_seconds": 3}}},
            "headrace:functions.ingest.timeout_seconds: must be ≥ 4",
        ),
        (  # a connect that waits out its timeout would leave no time for any load
            {**BASE, "functions": {"loader": {"timeout_seconds": 6}}},
            "headrace:functions.loader.timeout_seconds: must be ≥ 7",
        ),
        (
            {**BASE, "functions": {"loader": {"batch_size": 50, "batching_window_seconds": 0}}},
            "headrace:functions.loader.batching_window_seconds: must be ≥ 1 when batch_size is above 10",
        ),
        (
            {**BASE, "functions": {"processor": {"max_concurrency": 20, "reserved_concurrency": 10}}},
            "headrace:functions.processor.max_concurrency: must be set and ≤ reserved_concurrency (10)",
        ),
        (
            {**BASE, "functions": {"architecture": "arm"}},
            "headrace:functions.architecture: must be one of 'arm64' or 'x86_64'",
        ),
        (
            {**BASE, "functions": {"processor": {"timout_seconds": 30}}},
            "headrace:functions.processor.timout_seconds: unknown key",
        ),
        ({"environment": "dev"}, "headrace:region: is required when target is aws"),
        ({**BASE, "environment": "staging"}, "headrace:environment: must be one of 'dev', 'prod' or 'local'"),
        ({"region": "eu-west-1"}, "headrace:environment: is required"),
        ({**BASE, "queues": {"max_receive_count": 0}}, "headrace:queues.max_receive_count: must be ≥ 1"),
        (
            {**BASE, "retention": {"log_days": 31}},
            "headrace:retention.log_days: must be one of 1, 3, 5, 7, 14, 30",
        ),
        (
            {**BASE, "raw_prefix": "/incoming"},
            "headrace:raw_prefix: must be empty or a key prefix ending in '/'",
        ),
        ({**BASE, "raw_suffixes": ["csv"]}, "headrace:raw_suffixes: 'csv': a suffix is a dot"),
        (
            {**BASE, "warehouse": {"mode": "external"}},
            "headrace:warehouse.external: is required when warehouse.mode is external",
        ),
        (
            {**BASE, "target": "localstack", "environment": "local"},
            "headrace:warehouse.mode: must be external on LocalStack",
        ),
        (
            {**BASE, "environment": "prod", "warehouse": {"rds": {"deletion_protection": False}}},
            "headrace:warehouse.rds.deletion_protection: must be true when environment is prod",
        ),
        (
            {**BASE, "warehouse": {"rds": {"engine_version": "14"}}},
            "headrace:warehouse.rds.engine_version: PostgreSQL 15 or newer",
        ),
        (
            # auto minor upgrades would move the instance past it: a later deploy plans a downgrade
            {**BASE, "warehouse": {"rds": {"engine_version": "16.3"}}},
            "headrace:warehouse.rds.engine_version: must be a major version only (16)",
        ),
        (
            {**BASE, "warehouse": {"rds": {"engine_version": 16.3}}},
            "headrace:warehouse.rds.engine_version: must be a major version only (16)",
        ),
        (
            {**BASE, "warehouse": {"rds": {"engine_version": "sixteen"}}},
            "headrace:warehouse.rds.engine_version: must be a PostgreSQL major version",
        ),
        (
            {**BASE, "warehouse": {"rds": {"allocated_gb": 200}}},
            "headrace:warehouse.rds.max_allocated_gb: must be ≥ 220, 10 % above allocated_gb",
        ),
        (
            {**BASE, "warehouse": {"rds": {"allocated_gb": 100, "max_allocated_gb": 105}}},
            "headrace:warehouse.rds.max_allocated_gb: must be ≥ 110",
        ),
        (
            {**BASE, "warehouse": {"network": {"cidr": "10.0.0.0/8"}}},
            "headrace:warehouse.network.cidr: prefix length must be between",
        ),
        (  # a dead letter keeps its first send time: it would expire from its DLQ unseen
            {**BASE, "queues": {"message_retention_seconds": 14 * 86_400}},
            "headrace:queues.message_retention_seconds: must be at most 1209299 s: SQS counts a dead letter's",
        ),
        (
            {**BASE, "queues": {"message_retention_seconds": 60}},
            "headrace:queues.message_retention_seconds: must exceed max_receive_count times the longest",
        ),
        (
            {**BASE, "raw_suffixes": [f".x{i:04d}" for i in range(200)]},
            "headrace:raw_suffixes: the suffixes take 1399 characters; they travel in the processor's environment",
        ),
        (  # the event source runs at least 2 batches at once: the rest are throttled to the DLQ
            {**BASE, "functions": {"processor": {"max_concurrency": 2, "reserved_concurrency": 1}}},
            "headrace:functions.processor.reserved_concurrency: must be null or at least 2 on a queue consumer",
        ),
        (
            {**BASE, "functions": {"ingest_worker": {"reserved_concurrency": 0}}},
            "headrace:functions.ingest_worker.reserved_concurrency: must be null or at least 2 on a queue",
        ),
        (  # no limit: the event source scales past the reservation and the excess is throttled
            {**BASE, "functions": {"loader": {"max_concurrency": None, "reserved_concurrency": 3}}},
            "headrace:functions.loader.max_concurrency: must be set and ≤ reserved_concurrency (3)",
        ),
        (
            {**BASE, "ingest": {"endpoint": "function_url"}},
            "headrace:functions.ingest.reserved_concurrency: is required (at least 1) when ingest.endpoint",
        ),
        (  # 0 passed as "set", and the public URL refused every request
            {
                **BASE,
                "ingest": {"endpoint": "function_url"},
                "functions": {"ingest": {"reserved_concurrency": 0}},
            },
            "headrace:functions.ingest.reserved_concurrency: is required (at least 1) when ingest.endpoint",
        ),
        (
            {**BASE, "warehouse": {"network": {"cidr": "8.8.0.0/16"}}},
            "headrace:warehouse.network.cidr: must be a private block",
        ),
        (
            {**BASE, "ingest": {"max_body_bytes": 1_048_576}},  # its event can exceed Lambda's 6 MiB
            "headrace:ingest.max_body_bytes: must be ≤ 1000000",
        ),
        ({**BASE, "metadata": {"ttl_days": 3_000_000}}, "headrace:metadata.ttl_days: must be ≤ 36500"),
        ({**BASE, "reporting": {"alert_email": "ops"}}, "headrace:reporting.alert_email: does not match"),
        (
            {
                **BASE,
                "warehouse": {
                    "mode": "external",
                    "external": {"host": "db.example.com", "sslmode": "prefer"},
                },
            },
            "headrace:warehouse.external.sslmode: must be require, verify-ca or verify-full on AWS",
        ),
        (
            {
                **BASE,
                "warehouse": {
                    "mode": "external",
                    "external": {"host": "db.example.com", "sslmode": "verify-full"},
                },
            },
            "headrace:warehouse.external.sslmode: verify-full needs warehouse.sslrootcert",
        ),
        (
            {**BASE, "warehouse": {"sslrootcert": "/etc/ssl/certs/rds.pem"}},
            "headrace:warehouse.sslrootcert: must be the PEM text of one or more certificates",
        ),
        (
            {
                **BASE,
                "warehouse": {
                    "sslrootcert": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"
                },
            },
            "headrace:warehouse.sslrootcert: a certificate in it cannot be read",
        ),
        (
            {**BASE, "warehouse": {"sslrootcert": authority("CA").pem * 130}},
            "headrace:warehouse.sslrootcert: is 6",
        ),
        ({**BASE, "warehouse": {"schema": "pg_data"}}, "headrace:warehouse.schema: names starting with pg_"),
        ({**BASE, "warehouse": {"schema": "s" * 64}}, "headrace:warehouse.schema: does not match"),
        ({**BASE, "warehouse": {"schema": "public"}}, "headrace:warehouse.schema: must not be public"),
        ({**BASE, "raw_prefix": "in?coming/"}, "headrace:raw_prefix: must not contain '*', '?'"),
        ({**BASE, "raw_prefix": "p" * 300 + "/"}, "headrace:raw_prefix: is 301 bytes; at most 256"),
        ({**BASE, "raw_prefix": "${aws:username}/"}, "headrace:raw_prefix: must not contain '*', '?'"),
        (
            {**BASE, "ingest": {"original_readers": ["arn:aws:iam::123456789012:role/*"]}},
            "headrace:ingest.original_readers.0: does not match",
        ),
        (
            {**BASE, "pii": {"extra_rules": [{"name": "email", "pattern": "x@y"}]}},
            "headrace:pii.extra_rules: rule 'email' is defined twice",
        ),
        (
            {**BASE, "pii": {"extra_rules": [{"name": f"r{i}", "pattern": "x" * 150} for i in range(15)]}},
            "headrace:pii.extra_rules: the rules take more than 2048 characters",
        ),
        ({**BASE, "alarms": {"duration_p99_ratio": 1}}, "headrace:alarms.duration_p99_ratio: must be < 1"),
        (
            {**BASE, "environment": "prod", "faults": {"crash_rate": 0.1}},
            "headrace:faults.crash_rate: must be 0",
        ),
        ({**BASE, "environment": "local"}, "headrace:environment: local is for LocalStack"),
        (
            {**BASE, "queues": {"max_receive_count": 1, "message_retention_seconds": 2000}},
            "headrace:queues.message_retention_seconds: must exceed the oldest-message alarm",
        ),
        (
            {**BASE, "alarms": {"load_oldest_message_seconds": 4 * 86_400 - 200}},
            "headrace:queues.message_retention_seconds: must exceed the oldest-message alarm's threshold "
            "(345400 s, the load queue's)",
        ),
        (
            {**BASE, "alarms": {"ingest_oldest_message_seconds": 30}},
            "headrace:alarms.ingest_oldest_message_seconds: must be ≥ 60",
        ),
        (
            {**BASE, "ingest": {"original_readers": ["log-auditor"]}},
            "headrace:ingest.original_readers.0: does not match ^arn:aws",
        ),
        ({**BASE, "faults": {"crash_rate": 1.5}}, "headrace:faults.crash_rate: must be ≤ 1"),
        (
            {**BASE, "pii": {"disabled_rules": ["emails"]}},
            "headrace:pii.disabled_rules: unknown rules: emails",
        ),
        (
            {**BASE, "catalog": {"bytes_scanned_limit_mb": 5}},
            "headrace:catalog.bytes_scanned_limit_mb: must be ≥ 10",
        ),
        (
            {**BASE, "catalog": {"database": "headrace-dev"}},
            "headrace:catalog.database: does not match",
        ),
        (
            # read as 0 it would throttle every call of the function
            {**BASE, "functions": {"report": {"reserved_concurrency": False}}},
            "headrace:functions.report.reserved_concurrency: must be a number (or null), not false",
        ),
        (
            {**BASE, "functions": {"processor": {"batch_size": True}}},
            "headrace:functions.processor.batch_size: must be a number, not true",
        ),
        (
            {**BASE, "retention": {"raw_days": True}},
            "headrace:retention.raw_days: must be a number (or null), not true",
        ),
        ({**BASE, "faults": {"crash_rate": True}}, "headrace:faults.crash_rate: must be a number, not true"),
        (
            # a misspelt column_hint would otherwise be dropped: the column redacted by pattern only
            {
                **BASE,
                "pii": {
                    "extra_rules": [
                        {"name": "ticket", "pattern": "TCK-[0-9]{6}"},
                        {"name": "employee_id", "pattern": "EMP-[0-9]{6}", "columnhint": "^employee"},
                    ]
                },
            },
            "headrace:pii.extra_rules.1.columnhint: unknown key",
        ),
        (
            {**BASE, "pii": {"extra_rules": [{"name": "iban", "pattern": "(?<=X)\\d+"}]}},
            "headrace:pii.extra_rules: rule 0: pattern '(?<=X)\\\\d+' uses look-around",
        ),
    ],
)
def test_invalid_values_are_reported_against_their_key(values: dict[str, Any], expected: str) -> None:
    # Given a configuration with one mistake
    # When it is validated
    problems = errors_of(values)
    # Then the error names the offending key, in pulumi config's spelling, and the rule
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("every day", "must be rate(...) or cron("),
        ("cron(0 6 * * *)", "cron needs six fields"),
        ("cron(0 6 * * * *)", "cron needs '?'"),
        ("rate(1 hours)", "write rate(1 hour)"),
        ("rate(0 minutes)", "write rate(1 minute)"),
        ("rate(1 week)", "rate takes a whole number"),
        ("cron(0 24 * * ? *)", "cron hours field '24': '24' is not 0-23"),
        ("cron(75 6 * * ? *)", "cron minutes field '75'"),
        ("cron(0 6 32 * ? *)", "cron day-of-month field '32'"),
        ("cron(0 6 ? 1-13 * *)", "cron month field '1-13': '13' is not 1-12 or JAN-DEC"),
        ("cron(0 6 ? * 8 *)", "cron day-of-week field '8': '8' is not 1-7 or SUN-SAT"),
        ("cron(0 6 ? * FRY *)", "cron day-of-week field 'FRY'"),
        ("cron(0 6 * * ? 1969)", "cron year field '1969'"),
        ("cron(0/0 * * * ? *)", "cron minutes field '0/0': a step must be at least 1"),
        ("cron(0 6 ? * 2#9 *)", "cron day-of-week field '2#9': '2#9' is not a value"),
    ],
)
def test_schedules_eventbridge_would_refuse_are_refused_at_preview(schedule: str, message: str) -> None:
    problems = errors_of({**BASE, "reporting": {"schedule": schedule}})
    assert any(p.startswith(f"headrace:reporting.schedule: {message}") for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    # Given two mistakes in different sections
    problems = errors_of({**BASE, "queues": {"max_receive_count": 0}, "alarms": {"error_rate_percent": 0}})
    # Then both are reported, one line each
    assert len(problems) == 2
    assert str(ConfigError(problems)).count("\n") == 2


def test_unknown_top_level_key_in_the_stack_is_an_error() -> None:
    # Given a stack file with a misspelt top-level key (the engine lists every key it sets)
    config = engine_config(
        {"headrace:environment": "dev", "headrace:region": "eu-west-1", "headrace:retension": {}}
    )
    # When it is loaded
    with pytest.raises(ConfigError) as caught:
        load_config(FakeReader(config), present_keys=[*config, "aws:region", "headrace:db_password"])
    # Then the typo is reported; other namespaces and the secret are not
    assert caught.value.problems == ["headrace:retension: unknown key"]


@pytest.mark.parametrize(
    "values",
    [
        {"reporting": {"schedule": "rate(1 day)"}},
        {"reporting": {"schedule": "rate(15 minutes)"}},
        {"reporting": {"schedule": "cron(0 12 ? * MON-FRI *)"}},
        {"reporting": {"schedule": "cron(30 6 1 * ? *)"}},
        {"reporting": {"schedule": "cron(0/15 8-17 ? JAN-mar,DEC 2#1,6L 2026-2199)"}},
        {"reporting": {"schedule": "cron(0 6 L,LW,15W * ? *)"}},
        {"retention": {"log_days": 3653}},
        {"functions": {"loader": {"max_concurrency": 2, "reserved_concurrency": 2}}},
        {"functions": {"report": {"reserved_concurrency": 0}}},  # not a queue consumer: a stop switch
        {"warehouse": {"rds": {"allocated_gb": 100, "max_allocated_gb": 110}}},
        {"warehouse": {"rds": {"engine_version": 17}}},  # a number, as pulumi config set --path stores it
        {"warehouse": {"sslrootcert": authority("CA").pem + authority("another CA").pem}},
        {
            "warehouse": {
                "mode": "external",
                "external": {"host": "db.example.com", "sslmode": "verify-ca"},
                "sslrootcert": authority("CA").pem,
            }
        },
    ],
)
def test_values_aws_accepts_are_accepted(values: dict[str, Any]) -> None:
    parse_config({**BASE, **values})


def _bounds(field: Any) -> tuple[Any, Any]:
    return (
        next(m.ge for m in field.metadata if hasattr(m, "ge")),
        next(m.le for m in field.metadata if hasattr(m, "le")),
    )


def test_ingest_limits_are_the_ones_the_function_accepts() -> None:
    # Given the stack config's ingest limits and the ingest function's own settings
    # Then every value the config accepts is one the function accepts at cold start
    for key in ("max_body_bytes", "max_batch_records"):
        assert _bounds(Ingest.model_fields[key]) == _bounds(IngestApiSettings.model_fields[key]), key


def test_the_ingest_timeout_leaves_room_for_one_bounded_aws_call() -> None:
    # The API attempts an AWS call only when an attempt and its answer fit in what is left
    needed_ms = aws.API_ATTEMPT_MS + aws.ANSWER_RESERVE_MS
    assert needed_ms <= INGEST_MIN_TIMEOUT_SECONDS * 1000
    assert needed_ms > (INGEST_MIN_TIMEOUT_SECONDS - 1) * 1000
    assert FUNCTION_DEFAULTS["ingest"]["timeout_seconds"] >= INGEST_MIN_TIMEOUT_SECONDS


def test_the_loader_timeout_leaves_room_for_the_database_connect_timeout() -> None:
    # What the loader keeps back (TimeBudget.of, as the loader calls it) leaves the whole
    # connect timeout at the minimum
    def usable_ms(seconds: int) -> int:
        context = SimpleNamespace(get_remaining_time_in_millis=lambda: seconds * 1000)
        return seconds * 1000 - TimeBudget.of(context).reserve_ms

    assert usable_ms(LOADER_MIN_TIMEOUT_SECONDS) >= CONNECT_TIMEOUT_SECONDS * 1000
    assert usable_ms(LOADER_MIN_TIMEOUT_SECONDS - 1) < CONNECT_TIMEOUT_SECONDS * 1000
    assert FUNCTION_DEFAULTS["loader"]["timeout_seconds"] >= LOADER_MIN_TIMEOUT_SECONDS
    parse_config({**BASE, "functions": {"loader": {"timeout_seconds": LOADER_MIN_TIMEOUT_SECONDS}}})


def test_a_prod_stack_without_an_alert_recipient_is_warned_about() -> None:
    # Given Pulumi.prod.yaml as shipped (no alert e-mail) and the dev stack
    prod, dev = load_stack("prod"), load_stack("dev")
    # Then only prod is warned that its alarms reach no one
    assert [w.split(":")[1].split(" ")[0] for w in config_warnings(prod)] == ["reporting.alert_email"]
    assert config_warnings(dev) == []
    with_email = parse_config(
        {**BASE, "environment": "prod", "reporting": {"alert_email": "ops@example.com"}}
    )
    assert config_warnings(with_email) == []


def test_work_queue_retention_that_leaves_dead_letters_little_time_is_warned_about() -> None:
    # Given work queues that keep a message 12 days (SQS allows 14)
    config = parse_config({**BASE, "queues": {"message_retention_seconds": 12 * 86_400}})
    # Then the stack is warned that a message failing at that age has 2 days in its DLQ
    (warning,) = config_warnings(config)
    assert warning.startswith(
        "headrace:queues.message_retention_seconds is 1036800 s: a message that reaches its DLQ "
        "that old has 48.0 hours left there"
    )
    # 11 days leave 3 (a weekend); the default 4 leave 10
    assert config_warnings(parse_config({**BASE, "queues": {"message_retention_seconds": 11 * 86_400}})) == []
    assert config_warnings(parse_config(BASE)) == []


def test_original_readers_without_kept_originals_are_warned_about() -> None:
    # Given auditors listed for originals the stack does not keep
    readers = ["arn:aws:iam::111122223333:role/auditor"]
    config = parse_config({**BASE, "ingest": {"original_readers": readers}})
    # Then the ignored key is named; with originals kept there is no warning
    (warning,) = config_warnings(config)
    assert warning.startswith("headrace:ingest.original_readers is set but ingest.keep_original is false")
    kept = parse_config({**BASE, "ingest": {"original_readers": readers, "keep_original": True}})
    assert config_warnings(kept) == []


def test_localstack_settings_that_need_its_licensed_image_are_warned_about() -> None:
    # Given Pulumi.local.yaml as shipped: only what LocalStack's free image has
    assert licensed_localstack_warnings(load_stack("local")) == []
    local = {
        "environment": "local",
        "target": "localstack",
        "warehouse": {"mode": "external", "external": {"host": "h"}},
    }
    # When a local stack asks for the HTTP API and the query catalog
    config = parse_config({**local, "ingest": {"endpoint": "http_api"}, "catalog": {"enabled": True}})
    # Then preview says, for each, that the free image fails the deployment midway and
    # which services the licensed one must start
    api, catalog = licensed_localstack_warnings(config)
    assert api.startswith("headrace:ingest.endpoint is http_api on target localstack: API Gateway v2")
    assert "LOCALSTACK_EXTRA_SERVICES=apigatewayv2 " in api
    assert catalog.startswith("headrace:catalog.enabled is true on target localstack: Glue and Athena")
    assert "LOCALSTACK_EXTRA_SERVICES=glue,athena " in catalog
    # On AWS the same settings are the defaults, not a warning
    assert licensed_localstack_warnings(parse_config(BASE)) == []


@pytest.mark.parametrize("stack", ["dev", "prod", "local", "staging-eu-west-1", "s" * 25])
def test_stack_names_that_fit_every_resource_name(stack: str) -> None:
    check_stack_name("headrace", stack)


@pytest.mark.parametrize("stack", ["s" * 26, "dev.eu", "dev_eu", "Dev", "dev-", "a--b"])
def test_stack_names_that_would_break_resource_names_are_refused(stack: str) -> None:
    # IAM roles and rules take 64 characters; buckets and RDS identifiers no '.', '_' or capitals
    with pytest.raises(ConfigError, match=f"stack name '{re.escape(stack)}': use lower-case letters"):
        check_stack_name("headrace", stack)


def load_aws(values: Mapping[str, Any], stack: Mapping[str, Any] = BASE) -> AwsSettings:
    """The aws: keys of a stack whose headrace: keys are ``stack``, as the engine passes them."""
    return load_aws_settings(FakeReader(engine_config(values), "aws"), parse_config(stack))


def test_the_aws_keys_that_guard_the_account_are_read() -> None:
    # Given a stack that pins its profile and account, and repeats its region in aws:region
    settings = load_aws(
        {
            "aws:profile": "prod",
            # as written by pulumi config set --path (a number) and quoted in YAML
            "aws:allowedAccountIds": [111122223333, "012345678901"],
            "aws:region": "eu-west-1",
        }
    )
    # Then they are read (an aws:region equal to headrace:region is accepted)
    assert settings.profile == "prod" and settings.allowed_account_ids == ("111122223333", "012345678901")
    assert settings.region == "eu-west-1"


@pytest.mark.parametrize(
    ("values", "stack", "expected"),
    [
        (
            {"aws:region": "us-west-2"},
            BASE,
            "aws:region: is us-west-2, but this stack deploys to headrace:region (eu-west-1)",
        ),
        (
            # LocalStack without headrace:region deploys to us-east-1
            {"aws:region": "eu-west-1"},
            {
                "environment": "local",
                "target": "localstack",
                "warehouse": {"mode": "external", "external": {"host": "h"}},
            },
            "aws:region: is eu-west-1, but this stack deploys to us-east-1 (headrace:region is not set)",
        ),
        (
            {"aws:allowedAccountIds": [12345678901]},
            BASE,
            "aws:allowedAccountIds.0: an AWS account id is 12 digits",
        ),
        (
            {"aws:forbiddenAccountIds": ["1234"]},
            BASE,
            "aws:forbiddenAccountIds.0: an AWS account id is 12 digits",
        ),
        (
            {"aws:allowedAccountIds": ["111122223333"], "aws:forbiddenAccountIds": ["444455556666"]},
            BASE,
            "aws:forbiddenAccountIds: set allowedAccountIds or forbiddenAccountIds, not both",
        ),
    ],
)
def test_aws_keys_the_program_cannot_honour_are_errors(
    values: dict[str, Any], stack: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_aws(values, stack)
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_aws_keys_the_program_ignores_are_warned_about() -> None:
    # Given a dev stack with an aws: key the explicit provider does not take
    dev = parse_config(BASE)
    keys = ["headrace:environment", "aws:region", "aws:profile", "aws:assumeRoles"]
    # Then that key is named; the ones it takes are not
    (warning,) = aws_warnings(dev, AwsSettings(profile="p"), keys)
    assert warning.startswith("aws:assumeRoles: ignored")
    # and on LocalStack, whose test credentials the provider uses, the account guards are ignored too
    local = load_stack("local")
    (warning,) = aws_warnings(local, AwsSettings.model_validate({"allowedAccountIds": ["111122223333"]}))
    assert warning.startswith("aws:allowedAccountIds: ignored on target localstack")
    assert aws_warnings(dev, AwsSettings(), ["aws:region"]) == []


def test_pii_rules_the_stack_accepts_parse_in_the_functions() -> None:
    # Given extra rules with every key a rule has, accepted by the stack config
    rules = [
        {
            "name": "employee_id",
            "pattern": "EMP-[0-9]{6}",
            "column_hint": "^employee",
            "skip_qualified": True,
            "skip_types": ["date"],
        },
        {"name": "staff_card", "pattern": "[0-9]{16}", "checksum": "luhn"},
    ]
    config = parse_config({**BASE, "pii": {"extra_rules": rules}})
    # When the processor and the ingest worker parse PII_EXTRA_RULES as the pipeline writes it
    # (the handlers' model refuses unknown keys too)
    variable = json.dumps(list(config.pii.extra_rules), separators=(",", ":"))
    names = {
        "PROCESSED_BUCKET": "b",
        "METADATA_TABLE": "m",
        "IDEMPOTENCY_TABLE": "i",
        "EVENT_BUS_NAME": "e",
        "HEADRACE_STACK": "s",
    }
    processor = ProcessorSettings.from_env({**names, "PII_EXTRA_RULES": variable})
    worker = IngestWorkerSettings.from_env(
        {"TENANT_LOGS_TABLE": "t", "HEADRACE_STACK": "s", "PII_EXTRA_RULES": variable}
    )
    # Then both get every key of every rule
    for parsed in (processor.pii_extra_rules, worker.pii_extra_rules):
        assert [r.model_dump(mode="json", exclude_defaults=True) for r in parsed] == rules


def test_configured_values_that_together_overfill_the_processor_environment_are_refused() -> None:
    # Given values that each stay within their own limit (prefix 256 bytes, suffixes under
    # 1,024 characters, rules under 2,048, a 255-character Glue database name)
    rules = [{"name": f"r{i}", "pattern": "[0-9]{" + str(i) + "}" + "x" * 166} for i in range(10)]
    values = {
        **BASE,
        "raw_prefix": "p" * 255 + "/",
        "raw_suffixes": [f".s{i:03d}" + "x" * 54 for i in range(17)],
        "pii": {"extra_rules": rules, "disabled_rules": ["email", "card", "national_id", "phone"]},
        "catalog": {"database": "d" * 255},
    }
    # When they are validated together
    (problem,) = errors_of(values)
    # Then the processor's 4 KB environment is reported against the largest, naming the others
    assert problem.startswith("headrace:pii.extra_rules: the processor's environment would take 4,")
    assert all(
        key in problem for key in ("raw_suffixes", "raw_prefix", "catalog.database", "pii.disabled_rules")
    )
    # and with the default database name and prefix they fit
    parse_config({**values, "catalog": {}, "raw_prefix": "incoming/"})


def test_the_environment_budget_is_the_documented_one() -> None:
    documentation = (ROOT / "docs" / "deploy.md").read_text()
    assert f"{PROCESSOR_GENERATED_ENVIRONMENT_BYTES} bytes are kept" in documentation
    assert (
        f"at most {LAMBDA_ENVIRONMENT_BYTES - PROCESSOR_GENERATED_ENVIRONMENT_BYTES:,} bytes" in documentation
    )


def test_no_consumer_settings_can_ask_for_a_visibility_timeout_sqs_refuses():
    # Given the largest timeout and batching window a consumer's settings accept
    def upper(field: str) -> int:
        return next(m.le for m in ConsumerSettings.model_fields[field].metadata if hasattr(m, "le"))

    # Then its queue's visibility timeout is within SQS's 12 hours: no check of its own needed
    assert visibility_timeout(upper("timeout_seconds"), upper("batching_window_seconds")) <= 43_200
