"""The newcomer's documentation matches the files it describes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_of_the_compose_file_is_documented_in_the_localstack_guide():
    # Given the variables docker-compose.yml takes from the environment (${NAME:-default})
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert "HEADRACE_DOCKER_SUBNET" in variables
    # When the LocalStack guide is read
    guide = (ROOT / "docs" / "localstack.md").read_text()
    # Then it names each of them: changing one without another (a subnet without its IP
    # range) gives a network Docker refuses
    assert sorted(v for v in variables if not re.search(rf"\b{v}\b", guide)) == []
