"""The configuration the embedded runtime deploys the program with: the `local` stack file,
the runtime's own settings and ``local up --config KEY=VALUE``, validated as the program
validates it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi
import pytest

from headrace.local.deploy import deploy
from headrace.local.emulator import REGION

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
