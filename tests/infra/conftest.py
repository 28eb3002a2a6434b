"""Infra tests: the Pulumi program and its components under Pulumi mocks.

``deploy(stack)`` runs the real ``__main__.py`` in-process with a stack's configuration
(read from ``Pulumi.<stack>.yaml`` exactly as the engine would pass it) and returns a
plain snapshot of every registered resource and every stack output, resolved. The two
stacks are deployed once per session; component tests build single components.
No Lambda package is built: HEADRACE_LAMBDA_ARCHIVE points at a tiny zip.
"""

from __future__ import annotations

import json
import os
import runpy
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from .mocks import PipelineMocks, RecordingMonitor, Registered

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "headrace"
DB_PASSWORD = "local-Pa55word-from-config"


def stack_file_config(stack: str) -> dict[str, Any]:
    """``config:`` of Pulumi.<stack>.yaml (parsed YAML values)."""
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


def engine_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to a Python program: structured values as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def with_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` (``headrace:key`` -> value) into a stack's config."""
    merged = json.loads(json.dumps(dict(base)))

    def merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
        for key, value in update.items():
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(merged, overrides)
    return merged


@dataclass
class Deployment:
    stack: str
    resources: list[Registered]
    urns: list[str]
    outputs: dict[str, Any]
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, kind: str) -> list[Registered]:
        return [r for r in self.resources if r.type == kind]

    def named(self, name: str, kind: str | None = None) -> Registered:
        found = [r for r in self.resources if r.name == name and (kind is None or r.type == kind)]
        assert len(found) == 1, f"{len(found)} resources named {name!r}"
        return found[0]

    def types(self) -> set[str]:
        return {r.type for r in self.resources if r.custom}


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "lambda.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("handlers/__init__.py", "")
    return path


def deploy(
    stack: str,
    archive: Path,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    *,
    stack_name: str | None = None,
    preview: bool = False,
) -> Deployment:
    """Run __main__.py under mocks with Pulumi.<stack>.yaml (+ overrides), as the stack
    ``stack_name`` (default: ``stack``); as a preview (a dry run) with ``preview``."""
    values = with_overrides(stack_file_config(stack), overrides or {})
    stack = stack_name or stack
    config = engine_config(values)
    secrets = {"headrace:db_password": DB_PASSWORD} if secrets is None else dict(secrets)
    config.update(secrets)

    mocks = PipelineMocks(region=values.get("headrace:region", "us-east-1"))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(config, list(secrets))
    exports: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    secret_flags: dict[str, bool] = {}

    saved_export = pulumi.export
    saved_env = {k: os.environ.get(k) for k in ("PULUMI_CONFIG", "HEADRACE_LAMBDA_ARCHIVE")}
    # The engine passes a program its configuration in PULUMI_CONFIG.
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    os.environ["HEADRACE_LAMBDA_ARCHIVE"] = str(archive)
    pulumi.export = lambda name, value: exports.__setitem__(name, value)  # type: ignore[assignment]
    try:

        @pulumi.runtime.test
        def run() -> pulumi.Output[Any]:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
            flags = {name: pulumi.Output.from_input(value).is_secret() for name, value in exports.items()}

            def record(values: list[Any]) -> None:
                outputs, secret = values
                resolved.update(outputs)
                secret_flags.update(secret)

            return pulumi.Output.all(
                pulumi.Output.all(**exports),
                pulumi.Output.all(**{k: pulumi.Output.from_input(v) for k, v in flags.items()}),
            ).apply(record)

        run()
    finally:
        pulumi.export = saved_export
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    monitor.annotate(mocks.resources)
    return Deployment(
        stack=stack,
        resources=list(mocks.resources),
        urns=list(monitor.get_registered_resources()),
        outputs=resolved,
        secret_outputs={name for name, flag in secret_flags.items() if flag},
    )


@pytest.fixture(scope="session")
def dev(tiny_archive: Path) -> Deployment:
    return deploy("dev", tiny_archive)


@pytest.fixture(scope="session")
def local(tiny_archive: Path) -> Deployment:
    return deploy("local", tiny_archive)


@pytest.fixture(params=["dev", "local"])
def stack(request: pytest.FixtureRequest) -> Deployment:
    """Each stack in turn: for properties both must have."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def component_mocks() -> Iterator[PipelineMocks]:
    """Fresh mocks for a test that builds components directly."""
    mocks = PipelineMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="test", preview=False)
    yield mocks
